package caddymodule

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

func TestAdminAPIListsEvictsAndRefuses(t *testing.T) {
	n := startOpsNet(t, false)

	t.Run("list", func(t *testing.T) {
		var services []serviceView
		if status, body := n.adminJSON(http.MethodGet, "/gunshu/managers/main/services", &services); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		var addrs []string
		for _, s := range services {
			addrs = append(addrs, s.Address)
			if s.FirstRegistered.IsZero() || s.LastRegistered.Before(s.FirstRegistered) {
				t.Errorf("%s: registered first %v, last %v", s.Address, s.FirstRegistered, s.LastRegistered)
			}
		}
		want := slices.Clone(n.relays)
		slices.Sort(want)
		if !slices.Equal(addrs, want) {
			t.Fatalf("listed %v, want the relays %v", addrs, want)
		}
	})

	t.Run("patrol results", func(t *testing.T) {
		// Patrol runs every 300ms; wait for a test of every relay.
		var services []serviceView
		testkit.Eventually(t, 10*time.Second, "a patrol test of every relay", func() bool {
			services = n.waitServices(len(n.relays))
			return !slices.ContainsFunc(services, func(s serviceView) bool { return s.LastTest == nil })
		})
		for _, s := range services {
			if s.Health != healthHealthy || s.LastTest == nil || s.LastTestLatencyMS == nil || *s.LastTestLatencyMS <= 0 || s.ConsecutiveFailures != 0 {
				t.Errorf("after patrol, %s is %+v; want healthy with a latency", s.Address, s)
			}
		}
	})

	t.Run("manager", func(t *testing.T) {
		var m managerView
		if status, body := n.adminJSON(http.MethodGet, "/gunshu/managers/main", &m); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		// Patrol found every relay healthy above; three services leave an
		// initiator among them two to choose from: too few to hide it.
		net, e := m.Network, m.Network.Exposure
		if m.Name != "main" || len(m.Services) != len(n.relays) || net.Services != len(n.relays) || net.Healthy != len(n.relays) ||
			net.Failing != 0 || net.Untested != 0 || e.UsableRelays != len(n.relays)-1 || e.MeetsTargets || e.Warning == "" {
			t.Fatalf("GET /gunshu/managers/main: %+v", m)
		}
		var all []managerSummary
		if status, body := n.adminJSON(http.MethodGet, "/gunshu/managers", &all); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		if len(all) != 1 || all[0].Name != "main" || all[0].Network != net {
			t.Fatalf("GET /gunshu/managers: %+v, want main with %+v", all, net)
		}
	})

	t.Run("evict", func(t *testing.T) {
		gone := n.relays[0]
		var answer map[string]string
		if status, body := n.adminJSON(http.MethodDelete, "/gunshu/managers/main/services/"+gone, &answer); status != http.StatusOK || answer["evicted"] != gone {
			t.Fatalf("DELETE: status %d, body %s", status, body)
		}
		var services []serviceView
		n.adminJSON(http.MethodGet, "/gunshu/managers/main/services", &services)
		if len(services) != len(n.relays)-1 || slices.ContainsFunc(services, func(s serviceView) bool { return s.Address == gone }) {
			t.Fatalf("after evicting %s the list is %+v", gone, services)
		}
		// An evicted address is unknown now: a second DELETE is a 404.
		assertAPIError(t, n, http.MethodDelete, "/gunshu/managers/main/services/"+gone, http.StatusNotFound, "has no service")
	})

	t.Run("errors", func(t *testing.T) {
		assertAPIError(t, n, http.MethodGet, "/gunshu/managers/nosuch/services", http.StatusNotFound, `no gunshu manager named "nosuch"`)
		assertAPIError(t, n, http.MethodDelete, "/gunshu/managers/nosuch/services/"+n.relays[1], http.StatusNotFound, "no gunshu manager")
		assertAPIError(t, n, http.MethodDelete, "/gunshu/managers/main/services/not-an-address", http.StatusBadRequest, "bad service address")
		assertAPIError(t, n, http.MethodDelete, "/gunshu/managers/main/services/127.0.0.1:99999", http.StatusBadRequest, "bad service address")
		assertAPIError(t, n, http.MethodPost, "/gunshu/managers/main/services", http.StatusMethodNotAllowed, "use GET")
		assertAPIError(t, n, http.MethodGet, "/gunshu/nothing", http.StatusNotFound, "no such gunshu endpoint")
		assertAPIError(t, n, http.MethodGet, "/gunshu/managers/nosuch", http.StatusNotFound, `no gunshu manager named "nosuch"`)
		assertAPIError(t, n, http.MethodDelete, "/gunshu/managers/main", http.StatusMethodNotAllowed, "use GET")
		assertAPIError(t, n, http.MethodPost, "/gunshu/managers", http.StatusMethodNotAllowed, "use GET")
	})

	t.Run("relays", func(t *testing.T) {
		var relays []relayView
		if status, body := n.adminJSON(http.MethodGet, "/gunshu/relays", &relays); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, body)
		}
		var advertised []string
		for _, r := range relays {
			advertised = append(advertised, r.Advertise)
			if len(r.Registrations) != 1 || r.Registrations[0].Manager != n.manager || !r.Registrations[0].OK ||
				r.Registrations[0].LastAttempt == nil || r.Registrations[0].Successes < 1 {
				t.Errorf("relay %s registrations %+v; want one ok with %s", r.Advertise, r.Registrations, n.manager)
			}
			if r.ActiveSessions != 0 {
				t.Errorf("relay %s has %d active sessions, want 0", r.Advertise, r.ActiveSessions)
			}
		}
		want := slices.Clone(n.relays)
		slices.Sort(want)
		if !slices.Equal(advertised, want) {
			t.Errorf("relays %v, want %v", advertised, want)
		}
	})
}

// assertAPIError checks that the admin API answers with status and a JSON
// error whose text contains want.
func assertAPIError(t *testing.T, n *opsNet, method, path string, status int, want string) {
	t.Helper()
	var answer struct {
		Error string `json:"error"`
	}
	got, body := n.adminJSON(method, path, &answer)
	if got != status || !strings.Contains(answer.Error, want) {
		t.Errorf("%s %s: %d %s; want %d with an error containing %q", method, path, got, body, status, want)
	}
}
