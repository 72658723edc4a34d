package caddymodule

import (
	"bytes"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// TestMetricsCountTrafficExactly drives routes and bad requests through a
// network loaded from a Caddyfile and checks that the admin /metrics
// endpoint moved by exactly what was sent.
func TestMetricsCountTrafficExactly(t *testing.T) {
	n := startOpsNet(t, false)
	before := n.scrape()

	const sessions, size = 20, 10000
	for i := range sessions {
		payload := make([]byte, size)
		for j := range payload {
			payload[j] = byte(rand.IntN(256))
		}
		echo, _, err := n.session(payload)
		if err != nil || !bytes.Equal(echo, payload) {
			t.Fatalf("session %d: echoed %d bytes (err %v), want the %d sent", i, len(echo), err, size)
		}
	}
	// One malformed est and one naming a closed port, each to a relay.
	if got, err := opsExchange(n.relays[0], "est\nx\n"); err != nil || got != "fail\n" {
		t.Fatalf("bad est answered %q, %v; want fail", got, err)
	}
	if got, err := opsExchange(n.relays[1], "est\n1\n"+testkit.FreeAddr(t)+"\n"); err != nil || got != "fail\n" {
		t.Fatalf("est to a closed port answered %q, %v; want fail", got, err)
	}

	after := n.scrape()
	delta := func(name string, labels ...string) float64 {
		return after.value(name, labels...) - before.value(name, labels...)
	}
	type figure struct {
		name   string
		labels []string
		want   float64
	}
	figures := []figure{
		{"caddy_gunshu_route_results_total", []string{"role", "initiator", "outcome", "ok"}, sessions},
		{"caddy_gunshu_route_results_total", []string{"role", "relay", "outcome", "ok"}, sessions},
		{"caddy_gunshu_route_results_total", []string{"role", "responder", "outcome", "ok"}, sessions},
		{"caddy_gunshu_route_results_total", []string{"role", "relay", "outcome", "bad_input"}, 1},
		{"caddy_gunshu_route_results_total", []string{"role", "relay", "outcome", "dial_failed"}, 1},
		{"caddy_gunshu_route_results_total", []string{"role", "initiator", "outcome", "next_hop_failed"}, 0},
		{"caddy_gunshu_bytes_forwarded_total", []string{"role", "initiator", "direction", "up"}, sessions * size},
		{"caddy_gunshu_bytes_forwarded_total", []string{"role", "initiator", "direction", "down"}, sessions * size},
		{"caddy_gunshu_bytes_forwarded_total", []string{"role", "relay", "direction", "up"}, sessions * size},
		{"caddy_gunshu_bytes_forwarded_total", []string{"role", "relay", "direction", "down"}, sessions * size},
		{"caddy_gunshu_bytes_forwarded_total", []string{"role", "responder", "direction", "up"}, sessions * size},
		{"caddy_gunshu_bytes_forwarded_total", []string{"role", "responder", "direction", "down"}, sessions * size},
		{"caddy_gunshu_handshake_duration_seconds", []string{"role", "initiator"}, sessions},
		{"caddy_gunshu_handshake_duration_seconds", []string{"role", "relay"}, sessions},
		{"caddy_gunshu_handshake_duration_seconds", []string{"role", "responder"}, sessions},
		{"caddy_gunshu_sessions_active", []string{"role", "relay"}, 0},
		{"caddy_gunshu_sessions_active", []string{"role", "responder"}, 0},
		{"caddy_gunshu_sessions_active", []string{"role", "initiator"}, 0},
	}
	// A session's metrics are recorded just after its last byte, when the
	// client may have read all it gets: scrape until every figure has
	// moved as it must, or 5 s have passed. (Active sessions do not show
	// when this test's have ended: one of an earlier test ending meanwhile
	// cancels one of this test's still running.)
	moved := func() bool {
		return !slices.ContainsFunc(figures, func(f figure) bool { return delta(f.name, f.labels...) != f.want })
	}
	for deadline := time.Now().Add(5 * time.Second); !moved() && time.Now().Before(deadline); after = n.scrape() {
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range figures {
		if got := delta(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := after.value("caddy_gunshu_registry_services", "manager", "main"); got != 3 {
		t.Errorf("caddy_gunshu_registry_services{manager=main} = %v, want 3", got)
	}
	if got := after.value("caddy_gunshu_registrations_total", "manager", "main", "result", "ok"); got < 3 {
		t.Errorf("caddy_gunshu_registrations_total{manager=main,result=ok} = %v, want at least the 3 relays", got)
	}
	// Patrol tests the relays every 300ms.
	patrolled := 0.0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && patrolled < 3; time.Sleep(50 * time.Millisecond) {
		patrolled = n.scrape().value("caddy_gunshu_patrol_tests_total", "manager", "main", "result", "ok")
	}
	if patrolled < 3 {
		t.Errorf("caddy_gunshu_patrol_tests_total{manager=main,result=ok} = %v after 5s, want at least one round of 3", patrolled)
	}

	// No label of ours carries an address.
	address := regexp.MustCompile(`\d+\.\d+\.\d+\.\d+|:\d+$|\[`)
	for name, f := range after {
		if !strings.HasPrefix(name, "caddy_gunshu_") {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if address.MatchString(l.GetValue()) {
					t.Errorf("%s has label %s=%q, an address", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}
