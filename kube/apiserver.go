package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxPodList bounds the answer read: a node's pods are a few MiB at most.
const maxPodList = 64 << 20

// apiServer lists this node's pods from the Kubernetes API server.
type apiServer struct {
	base      string // for messages
	listURL   string
	tokenFile string
	timeout   time.Duration
	transport *http.Transport
	client    *http.Client
}

// apiPod is a pod from the API server, its owner not yet resolved.
type apiPod struct {
	pod      Pod
	owner    ownerRef
	terminal bool // Succeeded or Failed, or no longer listed
	carried  bool // no longer listed: kept for one refresh
}

type ownerRef struct{ kind, name string }

// newAPIServer checks the API server's settings and fills in cfg's
// defaults (in-cluster token and CA, $NODE_NAME).
func newAPIServer(cfg *Config, getenv func(string) string) (*apiServer, error) {
	var base *url.URL
	if cfg.APIServer == InCluster {
		host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, errors.New(`kube: api_server "in-cluster": KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set, so the agent is not running in a pod: give the API server's URL instead`)
		}
		base = &url.URL{Scheme: "https", Host: net.JoinHostPort(host, port)}
		if cfg.TokenFile == "" {
			cfg.TokenFile = serviceAccountDir + "/token"
		}
		if cfg.CAFile == "" {
			cfg.CAFile = serviceAccountDir + "/ca.crt"
		}
	} else {
		u, err := url.Parse(cfg.APIServer)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf(`kube: api_server %q must be "in-cluster" or an http(s) URL such as https://10.96.0.1:443`, cfg.APIServer)
		}
		if u.Scheme == "http" && cfg.TokenFile != "" {
			return nil, fmt.Errorf("kube: api_server %q: plain http would send token_file's token in clear: use https", cfg.APIServer)
		}
		u.RawQuery, u.Fragment = "", ""
		base = u
	}
	if cfg.NodeName == "" {
		cfg.NodeName = getenv("NODE_NAME")
	}
	if cfg.NodeName == "" {
		// Without it every agent would list every pod of the cluster.
		return nil, errors.New("kube: node_name is empty and NODE_NAME is not set: set NODE_NAME from the downward API (fieldRef spec.nodeName)")
	}
	if cfg.TokenFile != "" {
		if _, err := readToken(cfg.TokenFile); err != nil {
			return nil, fmt.Errorf("kube: token_file: %w", err)
		}
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kube: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kube: ca_file %s holds no PEM certificate", cfg.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	list := base.JoinPath("api/v1/pods")
	// resourceVersion=0 lets the API server answer from its watch cache
	// instead of etcd: every node asks every RefreshEvery.
	list.RawQuery = url.Values{"fieldSelector": {"spec.nodeName=" + cfg.NodeName}, "resourceVersion": {"0"}}.Encode()
	return &apiServer{
		base:      base.String(),
		listURL:   list.String(),
		tokenFile: cfg.TokenFile,
		timeout:   cfg.Timeout,
		transport: tr,
		client:    &http.Client{Transport: tr},
	}, nil
}

// readToken reads the bearer token. It is read at each refresh because
// projected service account tokens are rotated by the kubelet.
func readToken(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(raw))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return tok, nil
}

func (a *apiServer) list(ctx context.Context) ([]apiPod, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.listURL, nil)
	if err != nil {
		return nil, fmt.Errorf("kubernetes API server %s: %w", a.base, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "joules-agent")
	if a.tokenFile != "" {
		tok, err := readToken(a.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("kubernetes API server %s: token_file: %w", a.base, err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("kubernetes API server %s: %s", a.base, a.explain(ctx, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, a.statusError(resp)
	}
	var list corev1.PodList
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxPodList)).Decode(&list); err != nil {
		return nil, fmt.Errorf("kubernetes API server %s: reading the pod list: %w", a.base, err)
	}
	out := make([]apiPod, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, fromAPI(&list.Items[i]))
	}
	return out, nil
}

// explain shortens a transport error (the URL is already in the message)
// and says what to check.
func (a *apiServer) explain(ctx context.Context, err error) string {
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Sprintf("no answer within %v", a.timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var unknownCA x509.UnknownAuthorityError
	if errors.As(err, &unknownCA) {
		return err.Error() + ": check that ca_file holds the cluster's CA"
	}
	return err.Error()
}

// statusError says what an API server's refusal means for the agent's setup.
func (a *apiServer) statusError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var st metav1.Status
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		msg = st.Message
	}
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	var hint string
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		hint = fmt.Sprintf(": the token in %s was refused: check that the service account token is mounted and current", a.tokenFile)
	case http.StatusForbidden:
		hint = `: the agent's service account needs get and list on pods: bind it to a ClusterRole with rules apiGroups [""], resources ["pods"], verbs ["get", "list"]`
	}
	if msg != "" {
		msg = " (" + msg + ")"
	}
	return fmt.Errorf("kubernetes API server %s: %s%s%s", a.base, resp.Status, msg, hint)
}

func (a *apiServer) close() { a.transport.CloseIdleConnections() }

func fromAPI(p *corev1.Pod) apiPod {
	a := apiPod{
		pod: Pod{
			UID:       string(p.UID),
			Namespace: p.Namespace,
			Name:      p.Name,
			Labels:    p.Labels,
			CPUs:      cpuRequest(&p.Spec),
		},
		terminal: p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed,
	}
	if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
		a.owner = ownerRef{ref.Kind, ref.Name}
	} else if len(p.OwnerReferences) > 0 {
		// No reference is marked the controller: the first is the best guess.
		a.owner = ownerRef{p.OwnerReferences[0].Kind, p.OwnerReferences[0].Name}
	}
	return a
}

// cpuRequest is the pod's CPU request: the pod-level request where the pod
// has one, else the sum of its containers'.
func cpuRequest(spec *corev1.PodSpec) float64 {
	if spec.Resources != nil {
		if q, ok := spec.Resources.Requests[corev1.ResourceCPU]; ok {
			return float64(q.MilliValue()) / 1000
		}
	}
	var milli int64
	for _, c := range spec.Containers {
		if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
			milli += q.MilliValue()
		}
	}
	return float64(milli) / 1000
}

// cronJobName matches the CronJob controller's Job names:
// <cronjob>-<scheduled time in minutes since the epoch>.
var cronJobName = regexp.MustCompile(`^(.+)-(\d{8,10})$`)

// cronJobEpoch is before the first CronJob (Kubernetes 1.4, 2016): a Job
// whose number reads as a time before it was not made by one.
var cronJobEpoch = time.Date(2016, 1, 1, 0, 0, 0, 0, time.UTC)

// ownerOf names the workload that owns a pod, going up one level where the
// pod itself shows it: a ReplicaSet to its Deployment, a Job to its CronJob.
func ownerOf(ref ownerRef, labels map[string]string, now time.Time) (kind, name string) {
	switch ref.kind {
	case "ReplicaSet":
		if hash := labels["pod-template-hash"]; hash != "" {
			if deploy, ok := strings.CutSuffix(ref.name, "-"+hash); ok && deploy != "" {
				return "Deployment", deploy
			}
		}
	case "Job":
		// Only when the number is a plausible schedule time (past 2016, not
		// after tomorrow): a Job named train-2 is the user's own.
		if m := cronJobName.FindStringSubmatch(ref.name); m != nil {
			if minutes, err := strconv.ParseInt(m[2], 10, 64); err == nil {
				at := time.Unix(minutes*60, 0)
				if at.After(cronJobEpoch) && at.Before(now.Add(24*time.Hour)) {
					return "CronJob", m[1]
				}
			}
		}
	}
	return ref.kind, ref.name
}
