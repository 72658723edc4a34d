package gunshu

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func seeded(seed uint64) *random { return newRandom(rand.NewPCG(seed, seed+1)) }

func addrs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = simRelay(i)
	}
	return out
}

// Every route starts at the guard while it is listed; once it is gone
// from the list another relay takes its place, and stays.
func TestGuardFirstHopUntilUnlisted(t *testing.T) {
	d := &Dialer{Guards: &Guards{}, Rand: rand.NewPCG(1, 2)}
	d.init()
	listed := addrs(10)
	first := map[string]int{}
	for range 200 {
		f, list, err := d.pickRoute(listed, simResponder)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(list, f) {
			t.Fatalf("first hop %s also in the est list %v", f, list)
		}
		first[f]++
	}
	if len(first) != 1 {
		t.Fatalf("first hops %v, want one guard", first)
	}
	guard := d.Guards.Current()[0]
	if first[guard] != 200 {
		t.Fatalf("guard %s was first %d times of 200", guard, first[guard])
	}

	without := slices.DeleteFunc(slices.Clone(listed), func(a string) bool { return a == guard })
	f, _, err := d.pickRoute(without, simResponder)
	if err != nil {
		t.Fatal(err)
	}
	if f == guard || d.Guards.Current()[0] != f {
		t.Fatalf("guard %s gone from the list, yet first hop %s and guards %v", guard, f, d.Guards.Current())
	}
	// Back on the list, the old guard does not come back.
	for range 50 {
		if g, _, _ := d.pickRoute(listed, simResponder); g != f {
			t.Fatalf("first hop %s, want the new guard %s", g, f)
		}
	}
}

func TestNoGuardsFirstHopsVary(t *testing.T) {
	d := &Dialer{Rand: rand.NewPCG(1, 2)}
	d.init()
	first := map[string]bool{}
	for range 200 {
		f, _, err := d.pickRoute(addrs(10), simResponder)
		if err != nil {
			t.Fatal(err)
		}
		first[f] = true
	}
	if len(first) != 10 {
		t.Errorf("without guards, %d distinct first hops among 10 relays in 200 routes", len(first))
	}
}

func TestGuardsCountAndResponderClash(t *testing.T) {
	g := &Guards{Count: 3}
	listed := addrs(10)
	rnd := seeded(3)
	g.choose(listed, listed, rnd)
	guards := g.Current()
	if len(guards) != 3 {
		t.Fatalf("guards %v, want 3", guards)
	}
	used := map[string]bool{}
	for range 100 {
		used[g.choose(listed, listed, rnd)] = true
	}
	if len(used) != 3 || !used[guards[0]] || !used[guards[1]] || !used[guards[2]] {
		t.Errorf("first hops %v, want the three guards %v", used, guards)
	}
	// A route to a guard cannot start at it: the other guards serve.
	candidates := slices.DeleteFunc(slices.Clone(listed), func(a string) bool { return a == guards[0] })
	for range 50 {
		if f := g.choose(listed, candidates, rnd); f == guards[0] || f == "" {
			t.Fatalf("route to guard %s started at %q", guards[0], f)
		}
	}
	if !slices.Equal(g.Current(), guards) {
		t.Errorf("guards changed to %v for a route to one of them", g.Current())
	}
}

func TestGuardLifetime(t *testing.T) {
	now := time.Unix(1e9, 0)
	g := &Guards{Lifetime: time.Hour, Now: func() time.Time { return now }}
	listed := addrs(50)
	rnd := seeded(4)
	g.choose(listed, listed, rnd)
	chosen := g.set[0].Chosen
	now = now.Add(59 * time.Minute)
	g.choose(listed, listed, rnd)
	if !g.set[0].Chosen.Equal(chosen) {
		t.Fatal("guard replaced before its lifetime ended")
	}
	now = now.Add(time.Minute)
	g.choose(listed, listed, rnd)
	if !g.set[0].Chosen.Equal(now) {
		t.Fatalf("guard chosen at %v kept past its lifetime", g.set[0].Chosen)
	}
}

// The Dialer never offers its cover, even when the manager lists it.
func TestUsableDropsCoverAndDuplicates(t *testing.T) {
	d := &Dialer{Cover: simInitiator, Rand: rand.NewPCG(5, 6), Guards: &Guards{Count: 2}}
	d.init()
	listed := d.usable(append(addrs(5), simInitiator, simRelay(0)))
	if len(listed) != 5 || slices.Contains(listed, simInitiator) {
		t.Fatalf("usable relays %v", listed)
	}
	if d.NetDialer.LocalAddr != nil {
		t.Fatalf("bound to %v for a cover that is not local", d.NetDialer.LocalAddr)
	}
}

// A first route given up on before it starts still loads the stored
// guards, rather than choosing fresh ones that would overwrite them.
func TestGuardsLoadSurvivesCanceledRoute(t *testing.T) {
	store := &MemoryGuardStore{}
	saved := &Guards{Store: store}
	listed := addrs(30)
	saved.choose(listed, listed, seeded(1))
	if err := saved.save(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := &Dialer{Manager: "127.0.0.1:1", Guards: &Guards{Store: store}, Rand: rand.NewPCG(2, 3)}
	if _, err := d.Establish(ctx, simResponder); err == nil {
		t.Fatal("a canceled route succeeded")
	}
	if got := d.Guards.Current(); !slices.Equal(got, saved.Current()) {
		t.Fatalf("guards %v after a canceled first route, stored %v", got, saved.Current())
	}
}
