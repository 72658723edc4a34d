package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// testLog writes the bench's progress lines to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestBenchSmoke runs the whole bench small, on this checkout: Caddy built
// from it, every row, a few requests each on short links, and one page
// load per browser variant. It checks what holds whatever the code's
// speed: every request and page gets its answer through a route the links
// can read, no request beats the floor of the link model, and routes of
// max_relays 1 hold exactly one relay. The figures come from run.sh.
func TestBenchSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	const d = 3 * time.Millisecond
	cfg := Config{
		Trees: []string{"../.."}, D: d, Relays: 3, Requests: 3, Warmup: 1, Pages: 1,
		Seed: 1, MaxRelays: -1, MaxDuration: 6 * time.Minute, Work: t.TempDir(),
		Progress: testLog{t},
	}
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	rep.WriteText(&text)
	t.Log("\n" + text.String())

	rtt := 2 * d
	seen := map[*Row]int{}
	for _, res := range rep.Results {
		if res.Err != nil {
			t.Errorf("%s: %v", res.Row.Name, res.Err)
			continue
		}
		seen[res.Row]++
		if res.L < 0 || res.L > cfg.Relays || (res.Row.Fit && res.L == 0) {
			t.Errorf("%s: route of %d relays, want 1..%d", res.Row.Name, res.L, cfg.Relays)
		}
		// Nothing beats relays that dial on accept: 2 RTT for the
		// handshake and the exchange, 1 RTT per relay.
		if floor := time.Duration(2+res.L) * rtt; res.TTFB < floor {
			t.Errorf("%s: first byte after %v through %d relays, under the model's floor %v", res.Row.Name, res.TTFB, res.L, floor)
		}
	}
	if len(rep.Rows) != 8 {
		t.Errorf("%d rows, want direct, minimal chain and six Gunshu rows (this tree has early_reply)", len(rep.Rows))
	}
	for _, r := range rep.Rows {
		if seen[r] != cfg.Requests {
			t.Errorf("%s: %d measured requests, want %d", r.Name, seen[r], cfg.Requests)
		}
	}

	if len(rep.Pages) != len(rep.Variants) || len(rep.Variants) != 5 {
		t.Fatalf("%d page loads of %d variants, want one of each of 5", len(rep.Pages), len(rep.Variants))
	}
	for _, p := range rep.Pages {
		if p.Err != nil {
			t.Errorf("page through %s: %v", p.Variant.Name, p.Err)
			continue
		}
		if p.Timing.Load < float64(2*rtt.Milliseconds()) {
			t.Errorf("page through %s loaded in %.1f ms, under two round trips", p.Variant.Name, p.Timing.Load)
		}
		if p.Variant.net == nil {
			continue
		}
		if p.Routes < 1 {
			t.Errorf("page through %s: no route reached the responder", p.Variant.Name)
		}
		n := p.Variant.net
		oneRelay := p.Variant.socks == n.ProxyOne.Addr() || (n.ProxyOneEarly != nil && p.Variant.socks == n.ProxyOneEarly.Addr())
		if oneRelay && p.Hops != p.Routes {
			t.Errorf("page through %s: %d relay hops on %d routes, want one each", p.Variant.Name, p.Hops, p.Routes)
		}
	}
}
