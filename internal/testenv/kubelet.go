package testenv

import (
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// ServeKubelet serves a kubelet's pod-resources API (podresources/v1, the
// API the kubelet publishes on its unix socket) with impl on a new unix
// socket until the test ends, and returns the socket and the server.
func ServeKubelet(t testing.TB, impl podresourcesv1.PodResourcesListerServer) (string, *grpc.Server) {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "kubelet.sock")
	lis, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	podresourcesv1.RegisterPodResourcesListerServer(srv, impl)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return socket, srv
}
