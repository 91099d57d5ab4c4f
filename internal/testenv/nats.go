package testenv

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSCluster is a cluster of real NATS servers with JetStream, embedded in
// the test process and joined by routes on loopback.
type NATSCluster struct {
	t       testing.TB
	Name    string
	opts    []*server.Options
	servers []*server.Server
}

// StartNATSCluster starts n servers with JetStream in one cluster and
// waits until JetStream answers (a meta leader is elected). With leafOf,
// the servers are, instead, a leaf node cluster without JetStream of
// their own, joined to leafOf's leaf port: their clients use leafOf's
// JetStream through its domain, which is its name.
func StartNATSCluster(t testing.TB, name string, n int, leafOf *NATSCluster) *NATSCluster {
	t.Helper()
	c := &NATSCluster{t: t, Name: name}
	clusterPorts := make([]int, n)
	for i := range n {
		clusterPorts[i] = port(t, freePort(t))
	}
	for i := range n {
		o := &server.Options{ServerName: fmt.Sprintf("%s-%d", name, i), Host: "127.0.0.1", Port: port(t, freePort(t)), NoLog: true, NoSigs: true,
			MaxPayload: 8 << 20}
		if n > 1 {
			o.Cluster = server.ClusterOpts{Name: name, Host: "127.0.0.1", Port: clusterPorts[i]}
			for j := range n {
				if j != i {
					o.Routes = append(o.Routes, &url.URL{Scheme: "nats", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(clusterPorts[j]))})
				}
			}
		}
		if leafOf == nil {
			o.JetStream, o.StoreDir, o.JetStreamDomain = true, filepath.Join(t.TempDir(), o.ServerName), name
			o.LeafNode = server.LeafNodeOpts{Host: "127.0.0.1", Port: port(t, freePort(t))}
		} else {
			for _, hub := range leafOf.opts {
				o.LeafNode.Remotes = append(o.LeafNode.Remotes, &server.RemoteLeafOpts{URLs: []*url.URL{{Scheme: "nats-leaf", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(hub.LeafNode.Port))}}})
				break
			}
		}
		c.opts = append(c.opts, o)
		c.servers = append(c.servers, nil)
	}
	for i := range n {
		c.Start(i)
	}
	t.Cleanup(c.StopAll)
	for i := range n {
		WaitFor(t, 30*time.Second, "NATS server "+c.opts[i].ServerName+" ready", func() bool { return c.servers[i].ReadyForConnections(10 * time.Millisecond) })
	}
	if leafOf == nil {
		WaitFor(t, 60*time.Second, "JetStream of NATS cluster "+name, func() bool {
			for _, s := range c.servers {
				if s.JetStreamIsLeader() {
					return true
				}
			}
			return false
		})
	} else {
		WaitFor(t, 30*time.Second, "leaf node "+name+" joined", func() bool { return c.servers[0].NumLeafNodes() > 0 })
	}
	return c
}

func port(t testing.TB, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// URLs are the client URLs of every server.
func (c *NATSCluster) URLs() []string {
	out := make([]string, len(c.opts))
	for i, o := range c.opts {
		out[i] = fmt.Sprintf("nats://127.0.0.1:%d", o.Port)
	}
	return out
}

// Start starts server i (again, with its store as it was).
func (c *NATSCluster) Start(i int) {
	c.t.Helper()
	s, err := server.NewServer(c.opts[i])
	if err != nil {
		c.t.Fatalf("NATS server %s: %v", c.opts[i].ServerName, err)
	}
	go s.Start()
	c.servers[i] = s
	if !s.ReadyForConnections(30 * time.Second) {
		c.t.Fatalf("NATS server %s did not start", c.opts[i].ServerName)
	}
}

// Stop shuts server i down.
func (c *NATSCluster) Stop(i int) {
	if s := c.servers[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		c.servers[i] = nil
	}
}

// StopAll shuts every server down.
func (c *NATSCluster) StopAll() {
	for i := range c.servers {
		c.Stop(i)
	}
}
