package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// The metrics are process singletons: every config registers the same
// collectors into its own registry, so counters keep counting across
// reloads. No label carries an address: a manager is named by its config
// name, a peer never.
var gunshuMetrics = struct {
	sessionsActive    *prometheus.GaugeVec
	sessions          *prometheus.CounterVec
	routeResults      *prometheus.CounterVec
	bytesForwarded    *prometheus.CounterVec
	handshakeDuration *prometheus.HistogramVec
	registrations     *prometheus.CounterVec
	patrolTests       *prometheus.CounterVec
	registrySize      registrySizeCollector
}{
	sessionsActive: gaugeVec("sessions_active",
		"Connections being served, per role.",
		"role"),
	sessions: counterVec("sessions_total",
		"Finished connections, per role, first command (est, test, reg, list or none; probe: est with an empty list) and outcome.",
		"role", "command", "outcome"),
	routeResults: counterVec("route_results_total",
		"Finished routes (est sessions), per role and outcome.",
		"role", "outcome"),
	bytesForwarded: counterVec("bytes_forwarded_total",
		"Bytes forwarded by finished routes, per role and direction (up: toward the responder, down: back).",
		"role", "direction"),
	handshakeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "gunshu", Name: "handshake_duration_seconds",
		Help:    "Time from accepting a connection to forwarding (or to the reply of a one-shot exchange), per role.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"role"}),
	registrations: counterVec("registrations_total",
		"Registration attempts a manager answered, per manager and result.",
		"manager", "result"),
	patrolTests: counterVec("patrol_tests_total",
		"Patrol tests of registered services, per manager and result (ok, fail).",
		"manager", "result"),
	registrySize: registrySizeCollector{desc: prometheus.NewDesc(
		"caddy_gunshu_registry_services",
		"Services registered with a manager.",
		[]string{"manager"}, nil,
	)},
}

// counterVec and gaugeVec make the collectors named caddy_gunshu_<name>.
func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "gunshu", Name: name, Help: help,
	}, labels)
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "caddy", Subsystem: "gunshu", Name: name, Help: help,
	}, labels)
}

// registerMetrics adds the gunshu collectors to the config's registry,
// which the admin /metrics endpoint serves. Several modules of one config
// call it; the second call finds them registered.
func registerMetrics(registry *prometheus.Registry) error {
	return registerCollectors(registry,
		gunshuMetrics.sessionsActive,
		gunshuMetrics.sessions,
		gunshuMetrics.routeResults,
		gunshuMetrics.bytesForwarded,
		gunshuMetrics.handshakeDuration,
		gunshuMetrics.registrations,
		gunshuMetrics.patrolTests,
		gunshuMetrics.registrySize,
	)
}

// registerCollectors adds process-wide collectors to a config's registry;
// one a module of the same config registered already is no error.
func registerCollectors(registry *prometheus.Registry, collectors ...prometheus.Collector) error {
	for _, c := range collectors {
		if err := registry.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) && already.ExistingCollector == c {
				continue
			}
			return fmt.Errorf("registering gunshu metrics: %w", err)
		}
	}
	return nil
}

// metricsObserver feeds every session of a role into the metrics.
type metricsObserver struct{}

// newMetricsObserver registers the metrics into ctx's registry and returns
// the Observer a handler gives its gunshu role.
func newMetricsObserver(ctx caddy.Context) (gunshu.Observer, error) {
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return nil, err
	}
	return metricsObserver{}, nil
}

// SessionStarted implements gunshu.Observer.
func (metricsObserver) SessionStarted(role gunshu.Role) {
	gunshuMetrics.sessionsActive.WithLabelValues(string(role)).Inc()
}

// SessionEnded implements gunshu.Observer.
func (metricsObserver) SessionEnded(s gunshu.Session) {
	role, outcome := string(s.Role), string(s.Outcome)
	// The session leaves the active gauge last, so a scrape that sees it
	// gone sees every count of it.
	defer gunshuMetrics.sessionsActive.WithLabelValues(role).Dec()
	command := s.Command
	switch {
	case command == "":
		command = "none"
	case s.IsProbe():
		command = "probe"
	}
	gunshuMetrics.sessions.WithLabelValues(role, command, outcome).Inc()
	if command == gunshu.CmdEst {
		gunshuMetrics.routeResults.WithLabelValues(role, outcome).Inc()
	}
	if s.Bytes.Up > 0 {
		gunshuMetrics.bytesForwarded.WithLabelValues(role, "up").Add(float64(s.Bytes.Up))
	}
	if s.Bytes.Down > 0 {
		gunshuMetrics.bytesForwarded.WithLabelValues(role, "down").Add(float64(s.Bytes.Down))
	}
	if s.Handshake > 0 {
		gunshuMetrics.handshakeDuration.WithLabelValues(role).Observe(s.Handshake.Seconds())
	}
}

// registrationResult names the result of a registration for the metric
// label: a closed set, never the address.
func registrationResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, gunshu.ErrBadAddress):
		return "bad_address"
	case errors.Is(err, gunshu.ErrPolicyDenied):
		return "policy_denied"
	case errors.Is(err, gunshu.ErrRegistryFull):
		return "registry_full"
	case errors.Is(err, gunshu.ErrGroupFull):
		return "host_full"
	}
	return "failed"
}

func testResult(ok bool) string {
	if ok {
		return "ok"
	}
	return "fail"
}

// registrySizeCollector reports the size of every live manager's registry
// at scrape time, so the gauge is never stale.
type registrySizeCollector struct{ desc *prometheus.Desc }

// Describe implements prometheus.Collector.
func (c registrySizeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c registrySizeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, lm := range liveManagerList() {
		n, err := lm.size(ctx)
		if err != nil {
			continue // a registry that cannot answer has no size to report
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), lm.name)
	}
}
