package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mholt/caddy-l4/layer4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// The gunshu networks are TCP whose accept loop rides out running out of
// file descriptors. caddy-l4 v0.1.2 stops serving a listener at the first
// accept error that is not a timeout, so a relay, manager, responder or
// entrance that once hit its open-file limit would never accept again;
// a layer4 server listening on gunshu/<address> instead pauses, retries
// within a second, and logs and counts the pause. Caddy's network
// registry is the one place a plugin stands between Caddy's socket and
// the layer4 server.
var keepAcceptingNetworks = map[string]string{
	"gunshu":  "tcp",
	"gunshu4": "tcp4",
	"gunshu6": "tcp6",
}

func init() {
	for network := range keepAcceptingNetworks {
		caddy.RegisterNetwork(network, listenKeepAccepting)
	}
}

// listenKeepAccepting is the caddy.ListenerFunc of the gunshu networks:
// Caddy's own TCP listener (shared across reloads as usual), wrapped.
func listenKeepAccepting(ctx context.Context, network, host, portRange string, portOffset uint, cfg net.ListenConfig) (any, error) {
	tcp := keepAcceptingNetworks[network]
	na, err := caddy.ParseNetworkAddress(caddy.JoinNetworkAddress(tcp, host, portRange))
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", network, net.JoinHostPort(host, portRange), err)
	}
	ln, err := na.Listen(ctx, portOffset, cfg)
	if err != nil {
		return nil, err
	}
	inner, ok := ln.(net.Listener)
	if !ok {
		return nil, fmt.Errorf("%s: Caddy returned a %T, not a stream listener", network, ln)
	}
	if cctx, ok := ctx.(caddy.Context); ok {
		if err := registerCollectors(cctx.GetMetricsRegistry(), acceptPauseMetrics.pauses, acceptPauseMetrics.paused); err != nil {
			_ = inner.Close()
			return nil, err
		}
	}
	return gunshu.KeepAccepting(inner, acceptReport(inner.Addr().String())), nil
}

// acceptPauseMetrics count the pauses of every gunshu listener of the
// process; like the other gunshu metrics they carry no address.
var acceptPauseMetrics = struct {
	pauses *prometheus.CounterVec
	paused prometheus.Gauge
}{
	pauses: counterVec("accept_pauses_total",
		"Times a listener on a gunshu network paused accepting, per reason (descriptors, memory, other).",
		"reason"),
	paused: prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "gunshu", Name: "accept_paused",
		Help: "Listeners on a gunshu network whose accepting is paused now.",
	}),
}

// acceptReport logs and counts the pauses of the listener on addr, the
// server's own address.
func acceptReport(addr string) gunshu.AcceptHooks {
	log := caddy.Log().Named("gunshu.listener").With(zap.String("listener", addr))
	return gunshu.AcceptHooks{
		Paused: func(err error) {
			reason := acceptPauseReason(err)
			acceptPauseMetrics.pauses.WithLabelValues(reason).Inc()
			acceptPauseMetrics.paused.Inc()
			log.Error("accepting paused: retrying within a second until it works again",
				zap.String("reason", reason), zap.Error(err))
		},
		Resumed: func(pausedFor time.Duration, closed bool) {
			acceptPauseMetrics.paused.Dec()
			if closed {
				log.Info("listener closed while paused", zap.Duration("paused_for", pausedFor))
				return
			}
			log.Info("accepting again", zap.Duration("paused_for", pausedFor))
		},
	}
}

func acceptPauseReason(err error) string {
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "descriptors"
	case errors.Is(err, syscall.ENOBUFS), errors.Is(err, syscall.ENOMEM):
		return "memory"
	}
	return "other"
}

// plainTCPListeners lists the addresses on which layer4 servers listen
// with plain TCP, where caddy-l4 stops accepting for good once the
// process runs out of descriptors.
func plainTCPListeners(ctx caddy.Context) []string {
	app, err := ctx.AppIfConfigured("layer4")
	if err != nil {
		return nil
	}
	l4, ok := app.(*layer4.App)
	if !ok {
		return nil
	}
	var plain []string
	for _, name := range slices.Sorted(maps.Keys(l4.Servers)) {
		for _, a := range l4.Servers[name].Listen {
			network, _, _, err := caddy.SplitNetworkAddress(a)
			if err == nil && (network == "" || strings.HasPrefix(network, "tcp")) {
				plain = append(plain, a)
			}
		}
	}
	return plain
}

// Interface guard
var _ caddy.ListenerFunc = listenKeepAccepting
