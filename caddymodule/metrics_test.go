package caddymodule

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/gunshu/forward"
)

func TestRegisterMetricsTwiceIntoOneRegistry(t *testing.T) {
	for range 2 { // two configs, each with a fresh registry
		reg := prometheus.NewPedanticRegistry()
		for range 2 { // two modules of one config
			if err := registerMetrics(reg); err != nil {
				t.Fatal(err)
			}
		}
		gunshuMetrics.sessionsActive.WithLabelValues("relay").Add(0)
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if !strings.HasPrefix(f.GetName(), "caddy_gunshu_") {
				t.Errorf("metric %s is not prefixed caddy_gunshu_", f.GetName())
			}
		}
	}
}

func TestMetricsObserverCountsASession(t *testing.T) {
	var obs metricsObserver
	active := gunshuMetrics.sessionsActive.WithLabelValues("relay")
	routes := gunshuMetrics.routeResults.WithLabelValues("relay", "next_hop_failed")
	up := gunshuMetrics.bytesForwarded.WithLabelValues("relay", "up")
	down := gunshuMetrics.bytesForwarded.WithLabelValues("relay", "down")
	tests := gunshuMetrics.sessions.WithLabelValues("relay", "test", "ok")
	a0, r0, u0, d0, t0 := value(t, active), value(t, routes), value(t, up), value(t, down), value(t, tests)

	obs.SessionStarted(gunshu.RoleRelay)
	if got := value(t, active) - a0; got != 1 {
		t.Errorf("active moved by %v after a start, want 1", got)
	}
	obs.SessionEnded(gunshu.Session{Role: gunshu.RoleRelay, Command: gunshu.CmdEst, Outcome: gunshu.OutcomeNextHopFailed,
		Handshake: time.Millisecond, Bytes: forward.Counts{Up: 100, Down: 7}})
	obs.SessionStarted(gunshu.RoleRelay)
	obs.SessionEnded(gunshu.Session{Role: gunshu.RoleRelay, Command: gunshu.CmdTest, Outcome: gunshu.OutcomeOK})

	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"active", value(t, active) - a0, 0},
		{"routes", value(t, routes) - r0, 1}, // the test exchange is not a route
		{"bytes up", value(t, up) - u0, 100},
		{"bytes down", value(t, down) - d0, 7},
		{"test sessions", value(t, tests) - t0, 1},
	} {
		if c.got != c.want {
			t.Errorf("%s moved by %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestRegistrationResultIsAClosedSet(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{fmt.Errorf("x: %w", gunshu.ErrBadAddress), "bad_address"},
		{fmt.Errorf("verifying 192.0.2.1:7: %w", gunshu.ErrPolicyDenied), "policy_denied"},
		{gunshu.ErrRegistryFull, "registry_full"},
		{fmt.Errorf("registering 192.0.2.1:7: %w", gunshu.ErrGroupFull), "host_full"},
		{errors.New("verifying 192.0.2.1:7: connection refused"), "failed"},
	} {
		if got := registrationResult(c.err); got != c.want {
			t.Errorf("registrationResult(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// value reads a gauge or counter.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatal(err)
	}
	if g := pb.GetGauge(); g != nil {
		return g.GetValue()
	}
	return pb.GetCounter().GetValue()
}

// TestProbesAreNoRoutes: the responder probe (est with an empty list) is
// counted as command "probe", not as a route.
func TestProbesAreNoRoutes(t *testing.T) {
	probe := gunshu.Session{Role: gunshu.RoleRelay, Command: gunshu.CmdEst, Outcome: gunshu.OutcomeBadInput,
		Err: fmt.Errorf("reading est: %w", gunshu.ErrEmptyList)}
	routes := gunshuMetrics.routeResults.WithLabelValues("relay", "bad_input")
	probes := gunshuMetrics.sessions.WithLabelValues("relay", "probe", "bad_input")
	beforeRoutes, beforeProbes := value(t, routes), value(t, probes)
	metricsObserver{}.SessionStarted(gunshu.RoleRelay)
	metricsObserver{}.SessionEnded(probe)
	if got := value(t, routes) - beforeRoutes; got != 0 {
		t.Errorf("a probe moved route_results_total by %v", got)
	}
	if got := value(t, probes) - beforeProbes; got != 1 {
		t.Errorf("a probe moved sessions_total{command=probe} by %v, want 1", got)
	}
}
