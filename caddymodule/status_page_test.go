package caddymodule

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func TestStatusPageChartHasOnePointPerSample(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var samples []sizeSample
	for i := range 7 {
		samples = append(samples, sizeSample{Time: now.Add(time.Duration(i-6) * 10 * time.Minute), Services: i * 2})
	}
	snap := statusSnapshot{Manager: "main", Generated: now, History: samples}
	var page bytes.Buffer
	if err := renderStatusPage(&page, snap); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	if got := strings.Count(html, `<circle class="sample"`); got != len(samples) {
		t.Errorf("chart has %d points, want %d (one per sample)", got, len(samples))
	}
	// The first sample is at the left edge at zero, the last at the right
	// edge at the top: the chart spans the window and the largest size.
	if !strings.Contains(html, `cx="36.0" cy="118.0"`) {
		t.Errorf("oldest sample (an hour ago, 0 services) is not at the bottom left:\n%s", html)
	}
	if !strings.Contains(html, `cx="592.0" cy="10.0"`) {
		t.Errorf("newest sample (now, the maximum) is not at the top right:\n%s", html)
	}
	if !strings.Contains(html, "<title>12:00:00: 12 services</title>") {
		t.Error("the newest point has no tooltip with its size")
	}
}

func TestStatusPageIsSelfContainedAndEscaped(t *testing.T) {
	now := time.Now()
	ms := 1.25
	services := []serviceView{
		{Address: "192.0.2.7:7001", Health: healthHealthy, FirstRegistered: now, LastRegistered: now, LastTest: &now, LastTestLatencyMS: &ms},
		{Address: "192.0.2.8:7001", Health: healthFailing, FirstRegistered: now, LastRegistered: now, LastTest: &now, ConsecutiveFailures: 2},
	}
	snap := statusSnapshot{
		Manager:      `<script>alert(1)</script>`,
		Generated:    now,
		Services:     services,
		Network:      newNetworkView(services),
		RouteResults: []routeResult{{Role: "relay", Outcome: "ok", Count: 5}},
	}
	var page bytes.Buffer
	if err := renderStatusPage(&page, snap); err != nil {
		t.Fatal(err)
	}
	html := page.String()
	if strings.Contains(html, "<script>alert") {
		t.Error("manager name is not escaped")
	}
	// No external asset: the only URL is the SVG namespace.
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(html, -1) {
		if m[1] != "?format=json" {
			t.Errorf("page links to %q", m[1])
		}
	}
	for _, want := range []string{"192.0.2.7:7001", "1.2 ms", "192.0.2.8:7001", ">failing<", "<td>relay</td><td>ok</td><td>5</td>",
		`id="healthy-count" class="healthy">1<`, `id="failing-count" class="failing">1<`, `id="untested-count" class="untested">0<`} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// The page says whether the network is big enough to hide an initiator,
// with the figures and the warning an entrance would log for it.
func TestStatusPageShowsExposure(t *testing.T) {
	for _, c := range []struct {
		services int
		want     []string
	}{
		{3, []string{`id="exposure-verdict" class="failing">Too small to hide anyone well: with 2 usable relays listed`, "register more relays"}},
		{15, []string{`id="exposure-verdict" class="failing">Too small`, "with 14 usable relays listed"}},
		{16, []string{`id="exposure-verdict" class="healthy">Big enough: routes among 15 usable relays`}},
		{21, []string{`class="healthy">Big enough: routes among 20 usable relays`, "<td>0.21 %</td><td>&le; 1.00 %</td>",
			"<td>0.301</td><td>&le; 0.35</td>", "<td>3.32</td><td>&le; 3.5</td>"}},
	} {
		var services []serviceView
		for i := range c.services {
			services = append(services, serviceView{Address: fmt.Sprintf("192.0.2.%d:7001", i+1), Health: healthUntested})
		}
		snap := statusSnapshot{Manager: "main", Generated: time.Now(), Services: services, Network: newNetworkView(services)}
		var page bytes.Buffer
		if err := renderStatusPage(&page, snap); err != nil {
			t.Fatal(err)
		}
		for _, want := range c.want {
			if !strings.Contains(page.String(), want) {
				t.Errorf("%d services: the page lacks %q", c.services, want)
			}
		}
		var d gunshu.Dialer
		if w := snap.Network.Exposure.Warning; w != d.RouteSizeWarning(c.services-1) {
			t.Errorf("%d services: warning %q is not the entrance's", c.services, w)
		}
	}
}

func TestSizeHistoryKeepsTheLastHour(t *testing.T) {
	var h sizeHistory
	start := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for i := range 90 {
		h.add(start.Add(time.Duration(i)*time.Minute), i)
	}
	got := h.snapshot()
	// Samples 29..89: the newest and every one at most an hour older.
	if len(got) != 61 || got[0].Services != 29 || got[60].Services != 89 {
		t.Fatalf("history holds %d samples from %v to %v, want 61 from 29 to 89", len(got), got[0], got[len(got)-1])
	}
}
