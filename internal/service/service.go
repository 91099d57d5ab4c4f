// Package service tells systemd how a daemon is doing (sd_notify through
// github.com/coreos/go-systemd): ready once it serves, watchdog pings while
// a health check passes, stopping on shutdown. Outside systemd every call
// does nothing.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/exporter-toolkit/web"
)

// Ready says the daemon serves.
func Ready(logger *slog.Logger) {
	if sent, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		logger.Warn("cannot tell systemd the service is ready", "err", err)
	} else if sent {
		logger.Debug("told systemd the service is ready")
	}
}

// Stopping says the daemon is shutting down.
func Stopping() { _, _ = daemon.SdNotify(false, daemon.SdNotifyStopping) }

// Watchdog pings systemd's watchdog at half its interval for as long as
// healthy() answers true within a quarter of it, until ctx ends. A daemon
// that stops answering is then restarted by systemd (WatchdogSec=).
func Watchdog(ctx context.Context, logger *slog.Logger, healthy func(context.Context) bool) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	ticker := time.NewTicker(interval / 2)
	defer ticker.Stop()
	for {
		check, cancel := context.WithTimeout(ctx, interval/4)
		ok := healthy(check)
		cancel()
		if ok {
			_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		} else {
			logger.Warn("health check failed; not pinging systemd's watchdog")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// Serve binds the web listeners first, then tells systemd the daemon is
// ready, then serves in the background (the result goes to serveErr). With
// --web.systemd-socket the listeners are systemd's. A listener that cannot
// be bound is returned as an error, before ready.
func Serve(server *http.Server, flags *web.FlagConfig, logger *slog.Logger, serveErr chan<- error) error {
	if flags.WebSystemdSocket != nil && *flags.WebSystemdSocket {
		go func() { serveErr <- web.ListenAndServe(server, flags, logger) }()
		Ready(logger)
		return nil
	}
	var listeners []net.Listener
	for _, addr := range *flags.WebListenAddresses {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, prev := range listeners {
				prev.Close()
			}
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		listeners = append(listeners, l)
	}
	go func() { serveErr <- web.ServeMultiple(listeners, server, flags, logger) }()
	Ready(logger)
	return nil
}
