package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// TestStatusPageInChromium loads the status page of a running manager in
// headless Chromium: the page lists every registered service and its
// chart has one point per sample of the registry's size. A screenshot is
// kept under artifacts/ for CI.
func TestStatusPageInChromium(t *testing.T) {
	// Samples are taken by hand below, so the chart's content is known.
	defer func(old time.Duration) { sampleInterval = old }(sampleInterval)
	sampleInterval = time.Hour
	n := startOpsNet(t, false)

	for i := range 5 {
		payload := fmt.Appendf(nil, "status %d", i)
		if echo, _, err := n.session(payload); err != nil || string(echo) != string(payload) {
			t.Fatalf("session %d: %q, %v", i, echo, err)
		}
	}
	lm, _, ok := lookupManager("main")
	if !ok {
		t.Fatal("manager main is not live")
	}
	// The hour before this config: what a sampler running since then
	// would have seen.
	var past []sizeSample
	for i, size := range []int{2, 2, 3, 4, 4, 4, 3, 5, 5, 4, 4} {
		past = append(past, sizeSample{Time: time.Now().Add(time.Duration(i-11) * 5 * time.Minute), Services: size})
	}
	lm.history.mu.Lock()
	lm.history.samples = append(past, lm.history.samples...)
	lm.history.mu.Unlock()
	for range 4 {
		time.Sleep(5 * time.Millisecond)
		lm.sampleNow(context.Background())
	}
	waitHealthy(t, n)

	snap := statusJSON(t, "http://"+n.status+"/")
	// The past hour, the sample at start and four taken by hand.
	if want := len(past) + 1 + 4; len(snap.History) != want {
		t.Fatalf("JSON holds %d samples, want %d: %+v", len(snap.History), want, snap.History)
	}
	if last := snap.History[len(snap.History)-1]; last.Services != len(n.relays) {
		t.Errorf("last sample counts %d services, want %d", last.Services, len(n.relays))
	}

	// Three services: an initiator among them chooses from two, too few.
	if e := snap.Network.Exposure; snap.Network.Services != 3 || snap.Network.Healthy != 3 || e.UsableRelays != 2 ||
		e.MeetsTargets || !strings.Contains(e.Warning, "with 2 usable relays listed") {
		t.Errorf("JSON network %+v", snap.Network)
	}

	dom := testkit.Chromium(t, "--dump-dom", "http://"+n.status+"/")
	for _, relay := range n.relays {
		if !strings.Contains(dom, relay) {
			t.Errorf("the page does not list service %s", relay)
		}
	}
	if got := strings.Count(dom, `class="sample"`); got != len(snap.History) {
		t.Errorf("the chart has %d points, want one per sample: %d", got, len(snap.History))
	}
	for _, want := range []string{`id="service-count">3<`, `id="healthy-count" class="healthy">3<`, `id="failing-count" class="failing">0<`,
		"<td>initiator</td><td>ok</td>", `id="exposure-verdict" class="failing">Too small`} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %q", want)
		}
	}

	artifacts, err := filepath.Abs(filepath.Join("..", "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(artifacts, "status-page.png")
	_ = os.Remove(shot)
	testkit.Chromium(t, "--screenshot="+shot, "--window-size=1000,1000", "--hide-scrollbars", "http://"+n.status+"/")
	if info, err := os.Stat(shot); err != nil || info.Size() < 1000 {
		t.Fatalf("no screenshot at %s: %v", shot, err)
	}
}

// statusJSON fetches the status page as JSON.
func statusJSON(t *testing.T, url string) statusSnapshot {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := opsHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status JSON: %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var snap statusSnapshot
	if err := json.Unmarshal(body, &snap); err != nil {
		t.Fatal(err)
	}
	return snap
}

// waitHealthy waits until patrol has tested every service successfully.
func waitHealthy(t *testing.T, n *opsNet) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		services := n.waitServices(len(n.relays))
		if !slices.ContainsFunc(services, func(s serviceView) bool { return s.Health != healthHealthy }) {
			return
		}
	}
	t.Fatal("patrol did not find every service healthy within 5s")
}

// TestExampleStatusPage checks the status site of Caddyfile.example.
func TestExampleStatusPage(t *testing.T) {
	n := newExampleNet(t)
	n.load(nil)
	n.waitList(n.relays()...)
	snap := statusJSON(t, "http://"+n.addr("8081")+"/")
	var listed []string
	for _, s := range snap.Services {
		listed = append(listed, s.Address)
	}
	want := n.relays()
	slices.Sort(want)
	if snap.Manager != "default" || !slices.Equal(listed, want) {
		t.Errorf("the example's status page shows manager %q with %v, want default with %v", snap.Manager, listed, want)
	}
}

func TestStatusCaddyfileErrors(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{"gunshu_status a b", `Caddyfile:2 - gunshu_status takes at most one argument (the manager's name), got extra "b"`},
		{"gunshu_status {\n\t\tmanager main\n\t}", `Caddyfile:3 - gunshu_status takes no block, got "manager"`},
	} {
		text := "http://127.0.0.1:8081 {\n\t" + c.body + "\n}\n"
		_, err := adapt(t, text, "Caddyfile")
		checkParseError(t, text, err, c.want)
	}
}
