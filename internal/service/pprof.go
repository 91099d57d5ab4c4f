package service

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
)

// PprofHelp is the help of both daemons' --debug.pprof flag.
const PprofHelp = "Serve Go's net/http/pprof profiles under /debug/pprof/ on the web listener, behind its TLS and auth. Off by default: a profile shows the process's internals and costs CPU while it is taken."

// ServePprof serves Go's profiles under /debug/pprof/ on mux
// (--debug.pprof), behind whatever guards the listener.
func ServePprof(mux *http.ServeMux, logger *slog.Logger) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	logger.Warn("serving profiles under /debug/pprof/ (--debug.pprof)")
}
