package gunshu_test

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// estCounter counts relay sessions. After the registrations no test
// reaches the relays, so every session started is one hop of a route.
type estCounter struct{ started atomic.Int64 }

func (c *estCounter) SessionStarted(r gunshu.Role) {
	if r == gunshu.RoleRelay {
		c.started.Add(1)
	}
}
func (c *estCounter) SessionEnded(gunshu.Session) {}

// sharedSource is one seeded source for every relay of a network. Routes
// are built one at a time and a route's hops draw in turn, so the draws
// come in the same order in every run: which relay draws does not matter,
// because every draw is an index into a list whose order the draws before
// it decided. The outcome then depends on the seeds alone, not on the
// ports the relays got or the order the manager listed them in.
type sharedSource struct {
	mu  sync.Mutex
	src rand.Source
}

func (s *sharedSource) Uint64() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.src.Uint64()
}

// routeLengths builds routes routes through a network of relays relays
// with the given MaxRelays and returns how many routes had each length.
// A relay answers ok only after its whole rest of the route did, so when
// Establish returns every hop's session has started: the counter's
// growth is the route's exact length. The result is the same in every
// run (see sharedSource).
func routeLengths(t *testing.T, relays, maxRelays, routes int) map[int]int {
	var count estCounter
	seed := uint64(relays*1000 + maxRelays)
	shared := &sharedSource{src: rand.NewPCG(seed, 42)}
	n := testnet.NewWith(t, relays, func(r *gunshu.Relay) {
		r.Observer = &count
		r.Rand = shared
	})
	resp := testnet.EchoResponder(t)
	d := n.Dialer(seed)
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

// lengthLaw is the law of route lengths a Dialer's route-size law implies:
// with k relays offered, every length 1..k is equally likely, because each
// relay picks its successor uniformly (PROTOCOL.md, "Route establishment").
func lengthLaw(d *gunshu.Dialer, relays int) []float64 {
	law := d.RouteSizeLaw(relays)
	p := make([]float64, len(law))
	for k, pk := range law {
		for l := 0; l <= k; l++ {
			p[l] += pk / float64(k+1)
		}
	}
	return p
}

// chiSquare of observed counts for lengths 1..len(p) against the law p.
func chiSquare(lengths map[int]int, p []float64, total int) float64 {
	x := 0.0
	for l := 1; l <= len(p); l++ {
		expected := p[l-1] * float64(total)
		d := float64(lengths[l]) - expected
		x += d * d / expected
	}
	return x
}

// chi2Critical999 are the 99.9% points of the chi-square law with k-1
// degrees of freedom, for k = 2..6. The samples of these tests are the
// same in every run (fixed seeds, draws in a fixed order), so a test
// either always passes or always fails: the threshold judges one fixed
// sample, with no chance of a false failure from one run to the next.
var chi2Critical999 = map[int]float64{2: 10.83, 3: 13.82, 4: 16.27, 5: 18.47, 6: 20.52}

// TestPathLengthLaw: routes built through real relays hold as many relays
// as the route-size law implies: uniform on 1..n when the whole list is
// offered, geometric below the bound otherwise.
func TestPathLengthLaw(t *testing.T) {
	for _, tc := range []struct{ relays, maxRelays, want int }{
		{relays: 4, maxRelays: -1, want: 4}, // the 2003 rule: uniform on 1..4
		{relays: 5, maxRelays: -1, want: 5},
		{relays: 6, maxRelays: 3, want: 3}, // MaxRelays bounds the route
		{relays: 6, maxRelays: 0, want: 6}, // fewer relays than the default bound
	} {
		const routes = 300
		lengths := routeLengths(t, tc.relays, tc.maxRelays, routes)
		law := lengthLaw(&gunshu.Dialer{MaxRelays: tc.maxRelays}, tc.relays)
		t.Logf("%d relays, MaxRelays %d: lengths %v, law %.3f", tc.relays, tc.maxRelays, lengths, law)
		if len(law) != tc.want {
			t.Fatalf("%d relays, MaxRelays %d: routes of up to %d relays, want %d", tc.relays, tc.maxRelays, len(law), tc.want)
		}
		for l := range lengths {
			if l < 1 || l > tc.want {
				t.Errorf("%d relays, MaxRelays %d: a route of %d relays", tc.relays, tc.maxRelays, l)
			}
		}
		if x := chiSquare(lengths, law, routes); x > chi2Critical999[tc.want] {
			t.Errorf("%d relays, MaxRelays %d: lengths %v do not follow the law %.3f (chi-square %.1f > %.2f)",
				tc.relays, tc.maxRelays, lengths, law, x, chi2Critical999[tc.want])
		}
	}
}

// TestPathLengthRelayChoice isolates the relays' share of the law: a raw
// initiator always puts the responder last, so only the relays' random
// picks make routes shorter than the list. Each length must still be
// equally likely.
func TestPathLengthRelayChoice(t *testing.T) {
	var count estCounter
	seed := uint64(99)
	relays := make([]string, 4)
	for i := range relays {
		seed++
		relays[i] = testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Observer: &count, Rand: rand.NewPCG(seed, 7)})
	}
	resp, _ := serveResponder(t, &gunshu.Responder{}, func(c net.Conn) { c.Close() })
	const routes = 300
	lengths := map[int]int{}
	for range routes {
		before := count.started.Load()
		up := dialRaw(t, relays[0])
		writeRaw(t, up, estRequest(relays, resp))
		expectRead(t, up, "ok\n")
		lengths[int(count.started.Load()-before)]++
		up.Close()
	}
	t.Logf("lengths %v", lengths)
	if x := chiSquare(lengths, uniformLaw(4), routes); x > chi2Critical999[4] || len(lengths) != 4 {
		t.Fatalf("lengths %v are not uniform on 1..4 (chi-square %.1f)", lengths, x)
	}
}

// TestPathLengthInitiatorChoice isolates the initiator's share: relays
// that always pick the first entry leave the length to where the Dialer
// put the responder in the list.
func TestPathLengthInitiatorChoice(t *testing.T) {
	var count estCounter
	n := testnet.NewWith(t, 4, func(r *gunshu.Relay) { r.Observer, r.Rand = &count, pickFirst })
	resp := testnet.EchoResponder(t)
	d := n.Dialer(5)
	d.MaxRelays = -1
	const routes = 300
	lengths := map[int]int{}
	for range routes {
		before := count.started.Load()
		route, err := d.Establish(context.Background(), resp)
		if err != nil {
			t.Fatal(err)
		}
		lengths[int(count.started.Load()-before)]++
		route.Conn.Close()
	}
	t.Logf("lengths %v", lengths)
	if x := chiSquare(lengths, uniformLaw(4), routes); x > chi2Critical999[4] || len(lengths) != 4 {
		t.Fatalf("lengths %v are not uniform on 1..4 (chi-square %.1f)", lengths, x)
	}
}

// uniformLaw is the uniform law on 1..k.
func uniformLaw(k int) []float64 {
	p := make([]float64, k)
	for i := range p {
		p[i] = 1 / float64(k)
	}
	return p
}
