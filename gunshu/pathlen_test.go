package gunshu

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
)

// estCounter counts relay sessions. After the registrations no test
// reaches the relays, so every session started is one hop of a route.
type estCounter struct{ started atomic.Int64 }

func (c *estCounter) SessionStarted(r Role) {
	if r == RoleRelay {
		c.started.Add(1)
	}
}
func (c *estCounter) SessionEnded(Session) {}

// routeLengths builds routes routes through a network of relays relays
// with the given MaxRelays and returns how many routes had each length.
// A relay answers ok only after its whole rest of the route did, so when
// Establish returns every hop's session has started: the counter's
// growth is the route's exact length.
func routeLengths(t *testing.T, relays, maxRelays, routes int) map[int]int {
	var count estCounter
	seed := uint64(relays*1000 + maxRelays)
	n := newTestNetWith(t, relays, func(r *Relay) {
		r.Observer = &count
		seed++
		r.Rand = rand.NewPCG(seed, 42)
	})
	resp := n.echoResponder(t)
	d := n.dialer(seed)
	d.MaxRelays = maxRelays
	lengths := map[int]int{}
	for range routes {
		before := count.started.Load()
		route, err := d.Establish(context.Background(), resp)
		if err != nil {
			t.Fatal(err)
		}
		if route.Attempts != 1 {
			t.Fatalf("route took %d attempts", route.Attempts)
		}
		lengths[int(count.started.Load()-before)]++
		route.Conn.Close()
	}
	return lengths
}

// chiSquare of observed counts for lengths 1..k against a uniform law.
func chiSquare(lengths map[int]int, k, total int) float64 {
	expected := float64(total) / float64(k)
	x := 0.0
	for l := 1; l <= k; l++ {
		d := float64(lengths[l]) - expected
		x += d * d / expected
	}
	return x
}

// chi2Critical999 are the 99.9% points of the chi-square law with k-1
// degrees of freedom, for k = 2..6.
var chi2Critical999 = map[int]float64{2: 10.83, 3: 13.82, 4: 16.27, 5: 18.47, 6: 20.52}

// TestPathLengthUniform: with k relays offered, routes hold 1..k relays,
// each length equally likely (PROTOCOL.md, "Route establishment"). The
// whole-list rule offers every relay, so lengths are uniform on 1..k; with
// the route-size law (routesize.go) only the bound is checked here, the
// law's shape is checked in routesize_test.go.
func TestPathLengthUniform(t *testing.T) {
	for _, tc := range []struct{ relays, maxRelays, want int }{
		{relays: 4, maxRelays: -1, want: 4},
		{relays: 5, maxRelays: -1, want: 5},
		{relays: 6, maxRelays: 3, want: 3}, // MaxRelays caps the route
		{relays: 2, maxRelays: 0, want: 2}, // fewer relays than the default cap
	} {
		const routes = 300
		lengths := routeLengths(t, tc.relays, tc.maxRelays, routes)
		t.Logf("%d relays, MaxRelays %d: lengths %v", tc.relays, tc.maxRelays, lengths)
		for l := range lengths {
			if l < 1 || l > tc.want {
				t.Errorf("%d relays, MaxRelays %d: a route of %d relays", tc.relays, tc.maxRelays, l)
			}
		}
		if tc.maxRelays >= 0 {
			continue
		}
		if x := chiSquare(lengths, tc.want, routes); x > chi2Critical999[tc.want] {
			t.Errorf("%d relays, MaxRelays %d: lengths %v are not uniform on 1..%d (chi-square %.1f > %.2f)",
				tc.relays, tc.maxRelays, lengths, tc.want, x, chi2Critical999[tc.want])
		}
	}
}
