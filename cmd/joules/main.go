// Command joules holds the tools around the agent and the aggregator:
// simulators for demos and load tests, and the version.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"

	"github.com/joules-energy/joules/internal/sitemodel"
	"github.com/joules-energy/joules/redfish/redfishsim"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("joules", "Tools around the joules agent and aggregator.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.Version(version.Print("joules"))
	app.HelpFlag.Short('h')
	logConfig := &promslog.Config{}
	promslogflag.AddFlags(app, logConfig)

	sim := app.Command("sim", "Simulators for demos and load tests.")
	rf := sim.Command("redfish", "Serve Redfish mockup trees as live BMCs, one port each: moving readings, session auth, injectable faults.")
	var (
		mockups = rf.Flag("bmc", "A BMC as NAME=MOCKUP_DIR (the DMTF mockup layout). Repeatable.").Strings()
		count   = rf.Flag("count", "With --mockup: serve this many BMCs named bmc-0000… from one tree.").Default("0").Int()
		one     = rf.Flag("mockup", "The mockup tree for --count.").String()
		scales  = rf.Flag("scale", "Multiply BMC NAME's power, current and energy readings by FACTOR, as NAME=FACTOR (a facility meter from a PDU mockup). Repeatable.").Strings()
		follows = rf.Flag("follow", "Move BMC NAME's load with BMC OTHER's, as NAME=OTHER (a facility meter follows the IT load it feeds). Repeatable.").Strings()
		server  = addBMCServerFlags(rf)
	)
	site := newSiteCmd(sim)
	inf := sim.Command("inference", "Serve a simulated inference server's token counters on /metrics in vLLM's format.")
	var (
		infListen = inf.Flag("listen-address", "Address to serve /metrics on.").Default("127.0.0.1:8000").String()
		infRate   = inf.Flag("tokens-per-second", "Generation tokens per second, on average; the rate wanders around it.").Default("2500").Float64()
		infPrompt = inf.Flag("prompt-ratio", "Prompt tokens per generation token, on average.").Default("1.5").Float64()
		infSeed   = inf.Flag("seed", "Seed of the rate's wander: servers with different seeds move differently.").Default("1").Uint64()
		infModel  = inf.Flag("model", "The model_name label.").Default("meta-llama/Llama-3.1-8B-Instruct").String()
		infSite   = inf.Flag("site", "Follow the GPUs of --host in the simulated site of this seed (as joules sim site and the agents' sources.nvml.simulate_site): tokens per second go with their utilization, --tokens-per-second on average over a day.").String()
		infHost   = inf.Flag("host", "With --site: the host whose GPUs serve the model.").String()
		infServer = inf.Flag("server", "With --site: the host's simulated server.").Default("dgxh200").Enum(sitemodel.ServerNames()...)
	)
	rep := newReportCmd(app)
	jobs := newJobEnergyCmd(app)
	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "joules: %v; see joules --help\n", err)
		return 2
	}
	logConfig.Writer = stderr
	logger := promslog.New(logConfig)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	switch cmd {
	case rep.cmd.FullCommand():
		return rep.run(ctx, stdout, stderr)
	case jobs.cmd.FullCommand():
		return jobs.run(ctx, stdout, stderr)
	case site.cmd.FullCommand():
		return site.run(ctx, logger, stdout, stderr)
	case rf.FullCommand():
		bmcs := *mockups
		if *count > 0 {
			if *one == "" {
				fmt.Fprintln(stderr, "joules sim redfish: --count needs --mockup DIR")
				return 2
			}
			for i := range *count {
				bmcs = append(bmcs, fmt.Sprintf("bmc-%04d=%s", i, *one))
			}
		}
		if len(bmcs) == 0 {
			fmt.Fprintln(stderr, "joules sim redfish: no BMC: give --bmc NAME=DIR or --count N --mockup DIR")
			return 2
		}
		var perBMC map[string]redfishsim.Options
		perBMC, err = bmcOptions(bmcs, *scales, *follows)
		if err != nil {
			fmt.Fprintf(stderr, "joules sim redfish: %v\n", err)
			return 2
		}
		err = server.serve(ctx, logger, bmcs, perBMC, stdout)
	case inf.FullCommand():
		if !(*infRate > 0) || math.IsInf(*infRate, 0) || !(*infPrompt >= 0) || math.IsInf(*infPrompt, 0) {
			fmt.Fprintln(stderr, "joules sim inference: --tokens-per-second must be above 0 and --prompt-ratio 0 or above")
			return 2
		}
		if (*infSite == "") != (*infHost == "") {
			fmt.Fprintln(stderr, "joules sim inference: --site and --host go together")
			return 2
		}
		var l net.Listener
		l, err = net.Listen("tcp", *infListen)
		if err != nil {
			fmt.Fprintf(stderr, "joules sim inference: --listen-address: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "http://%s/metrics\n", l.Addr())
		sim := newInferenceSim(*infModel, *infRate, *infPrompt, *infSeed, time.Now)
		if *infSite != "" {
			sv, _ := sitemodel.ServerNamed(*infServer)
			sim.follow(siteHost{sitemodel.NewHost(*infSite, *infHost, sv)}, *infSite+"/"+*infHost)
		}
		err = serveInference(ctx, logger, l, sim)
	}
	if err != nil {
		fmt.Fprintf(stderr, "joules: %v\n", err)
		return 1
	}
	return 0
}

// bmcOptions reads --scale NAME=FACTOR and --follow NAME=OTHER into the
// options of each BMC they name; every name must be one of the BMCs served.
func bmcOptions(specs, scales, follows []string) (map[string]redfishsim.Options, error) {
	names := map[string]bool{}
	for _, spec := range specs {
		name, _, _ := strings.Cut(spec, "=")
		names[name] = true
	}
	out := map[string]redfishsim.Options{}
	for _, s := range scales {
		name, v, ok := strings.Cut(s, "=")
		if !ok || !names[name] {
			return nil, fmt.Errorf("--scale %q: write it NAME=FACTOR with NAME one of the BMCs", s)
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("--scale %q: %w", s, err)
		}
		if !(f > 0) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("--scale %q: the factor must be a number above 0", s)
		}
		o := out[name]
		o.Scale = f
		out[name] = o
	}
	for _, s := range follows {
		name, other, ok := strings.Cut(s, "=")
		if !ok || !names[name] || !names[other] {
			return nil, fmt.Errorf("--follow %q: write it NAME=OTHER with both names BMCs", s)
		}
		o := out[name]
		o.LoadOf = other
		out[name] = o
	}
	return out, nil
}

// bmcServer is how the simulated BMCs of a command are served.
type bmcServer struct {
	listen, caOut, user, passFile, admin, endpoints *string
	useTLS                                          *bool
}

func addBMCServerFlags(cmd *kingpin.CmdClause) bmcServer {
	return bmcServer{
		listen:    cmd.Flag("listen-address", "Host and first port; BMC i listens on port+i.").Default("127.0.0.1:18000").String(),
		useTLS:    cmd.Flag("tls", "Serve HTTPS with a self-signed certificate.").Bool(),
		caOut:     cmd.Flag("tls.ca-out", "Write the self-signed certificate (the agents' CA file) here.").String(),
		user:      cmd.Flag("username", "Account the BMCs accept.").Default("monitor").String(),
		passFile:  cmd.Flag("password-file", "File with the password the BMCs accept (default: the password 'joules-demo').").String(),
		admin:     cmd.Flag("admin-address", "Where to serve fault control: POST /bmc/NAME/fault (JSON), POST /bmc/NAME/expire-sessions.").Default("").String(),
		endpoints: cmd.Flag("endpoints-out", "Write the BMCs' names and endpoints here, one 'NAME URL' per line.").String(),
	}
}

// serve serves one BMC per NAME=MOCKUP_DIR spec until ctx ends.
func (f bmcServer) serve(ctx context.Context, logger *slog.Logger, specs []string, perBMC map[string]redfishsim.Options, stdout io.Writer) error {
	password := "joules-demo"
	if *f.passFile != "" {
		raw, err := os.ReadFile(*f.passFile)
		if err != nil {
			return fmt.Errorf("--password-file: %w", err)
		}
		password = strings.TrimRight(string(raw), "\r\n")
	}
	listen, useTLS, caOut, user, admin, endpointsOut := *f.listen, *f.useTLS, *f.caOut, *f.user, *f.admin, *f.endpoints
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen-address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("--listen-address %q: port: %w", listen, err)
	}
	var tlsConfig *tls.Config
	scheme := "http"
	if useTLS {
		cert, pemBytes, err := redfishsim.SelfSigned(host, "localhost", "127.0.0.1")
		if err != nil {
			return err
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		scheme = "https"
		if caOut != "" {
			if err := os.WriteFile(caOut, pemBytes, 0o644); err != nil {
				return err
			}
		}
	}
	byName := map[string]*redfishsim.BMC{}
	var servers []*http.Server
	var lines []string
	errc := make(chan error, len(specs)+1)
	for i, spec := range specs {
		name, dir, ok := strings.Cut(spec, "=")
		if !ok || name == "" || dir == "" {
			return fmt.Errorf("--bmc %q: write it NAME=MOCKUP_DIR", spec)
		}
		if _, dup := byName[name]; dup {
			return fmt.Errorf("--bmc %q: name used twice", name)
		}
		opts := perBMC[name]
		opts.Username, opts.Password = user, password
		bmc, err := redfishsim.New(name, filepath.Clean(dir), opts)
		if err != nil {
			return err
		}
		byName[name] = bmc
		addr := net.JoinHostPort(host, strconv.Itoa(port+i))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("BMC %s: %w", name, err)
		}
		srv := &http.Server{Handler: bmc, ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsConfig,
			ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelDebug)}
		servers = append(servers, srv)
		go func() {
			if tlsConfig != nil {
				errc <- srv.ServeTLS(l, "", "")
			} else {
				errc <- srv.Serve(l)
			}
		}()
		lines = append(lines, fmt.Sprintf("%s %s://%s", name, scheme, addr))
	}
	if admin != "" {
		srv := &http.Server{Handler: faultControl(byName), ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		l, err := net.Listen("tcp", admin)
		if err != nil {
			return fmt.Errorf("--admin-address: %w", err)
		}
		go func() { errc <- srv.Serve(l) }()
	}
	out := strings.Join(lines, "\n") + "\n"
	if endpointsOut != "" {
		if err := os.WriteFile(endpointsOut, []byte(out), 0o644); err != nil {
			return err
		}
	}
	if len(lines) <= 20 {
		fmt.Fprint(stdout, out)
	}
	logger.Info("SIMULATED Redfish BMCs serving", "count", len(specs), "first", lines[0], "tls", useTLS)

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(shutdown)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// faultControl lets tests and demos break and heal simulated BMCs.
func faultControl(bmcs map[string]*redfishsim.BMC) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /bmc/{name}/fault", func(w http.ResponseWriter, r *http.Request) {
		bmc := bmcs[r.PathValue("name")]
		if bmc == nil {
			http.Error(w, "no such BMC", http.StatusNotFound)
			return
		}
		var f struct {
			LatencyMillis int      `json:"latency_ms"`
			Hang          bool     `json:"hang"`
			Status        int      `json:"status"`
			Malformed     bool     `json:"malformed"`
			DropFields    []string `json:"drop_fields"`
		}
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			http.Error(w, "fault body: "+err.Error(), http.StatusBadRequest)
			return
		}
		bmc.SetFault(redfishsim.Fault{Latency: time.Duration(f.LatencyMillis) * time.Millisecond, Hang: f.Hang, Status: f.Status, Malformed: f.Malformed, DropFields: f.DropFields})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /bmc/{name}/expire-sessions", func(w http.ResponseWriter, r *http.Request) {
		bmc := bmcs[r.PathValue("name")]
		if bmc == nil {
			http.Error(w, "no such BMC", http.StatusNotFound)
			return
		}
		bmc.ExpireSessions()
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
