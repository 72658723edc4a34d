package caddymodule

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestOperatorToolsSurviveReload reloads the network: the metrics keep
// counting in the new config's registry, and the registry-size history
// and the admin API carry on; a config that fails to load leaves the
// running manager in the admin API.
func TestOperatorToolsSurviveReload(t *testing.T) {
	defer func(old time.Duration) { sampleInterval = old }(sampleInterval)
	sampleInterval = time.Hour
	n := startOpsNet(t, false)
	if echo, _, err := n.session([]byte("before reload")); err != nil || string(echo) != "before reload" {
		t.Fatalf("session: %q, %v", echo, err)
	}
	lm, _, _ := lookupManager("main")
	lm.sampleNow(context.Background())
	// The session is counted when every hop has closed, which may come
	// after the client has its echo: wait for it to end.
	before := n.scrape()
	for deadline := time.Now().Add(5 * time.Second); before.value("caddy_gunshu_sessions_active", "role", "initiator") != 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		before = n.scrape()
	}
	samples := len(lm.history.snapshot())

	// The same network with another patrol interval.
	if err := n.load(func(s string) string { return strings.Replace(s, "patrol_interval 300ms", "patrol_interval 400ms", 1) }); err != nil {
		t.Fatalf("reload: %v", err)
	}
	after := n.scrape()
	routes := []string{"role", "initiator", "outcome", "ok"}
	// The counters are the process's: a session another test left behind
	// may end between the two scrapes, so the count may grow, but a reload
	// must not reset it.
	if got, want := after.value("caddy_gunshu_route_results_total", routes...), before.value("caddy_gunshu_route_results_total", routes...); got < want || got < 1 {
		t.Errorf("after the reload route_results{initiator,ok} = %v, want at least %v as before", got, want)
	}
	if got := after.value("caddy_gunshu_registry_services", "manager", "main"); got != 3 {
		t.Errorf("after the reload registry_services{main} = %v, want 3", got)
	}
	lmAfter, _, ok := lookupManager("main")
	if !ok || lmAfter != lm || len(lm.history.snapshot()) < samples {
		t.Errorf("the reload lost the registry-size history (same entry: %v, samples %d, were %d)", lmAfter == lm, len(lm.history.snapshot()), samples)
	}
	n.waitServices(3)

	// A config whose relay fails validation, after the gunshu app of the
	// new config was provisioned, is rolled back; the admin API still
	// shows the running manager.
	err := n.load(func(s string) string {
		return strings.Replace(s, "advertise "+n.relays[2], "advertise "+n.relays[2]+"\n\t\t\t\t\tdeny not-a-cidr/99", 1)
	})
	if err == nil || !strings.Contains(err.Error(), "not-a-cidr") {
		t.Fatalf("a config with a bad deny entry: %v", err)
	}
	lm.mu.Lock()
	bound := len(lm.bound)
	lm.mu.Unlock()
	if bound != 1 {
		t.Errorf("after the failed reload %d managers are bound to main, want the running one", bound)
	}
	var services []serviceView
	if status, body := n.adminJSON(http.MethodGet, "/gunshu/managers/main/services", &services); status != http.StatusOK || len(services) != 3 {
		t.Errorf("after a failed reload the admin API answers %d %s, want the 3 services", status, body)
	}
	if echo, _, err := n.session([]byte("after reload")); err != nil || string(echo) != "after reload" {
		t.Errorf("session after the reloads: %q, %v", echo, err)
	}
}
