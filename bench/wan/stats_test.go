package main

import (
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestFitLine(t *testing.T) {
	f := fitLine([]float64{1, 2, 3, 4}, []float64{5, 8, 11, 14}) // 2 + 3x exactly
	if !near(f.A, 2) || !near(f.B, 3) || !near(f.SEA, 0) || !near(f.SEB, 0) || f.N != 4 {
		t.Errorf("exact line: %+v", f)
	}
	f = fitLine([]float64{0, 0, 2, 2}, []float64{1, 3, 5, 7}) // means 2 and 6: 2 + 2x
	if !near(f.A, 2) || !near(f.B, 2) || !(f.SEB > 0) {
		t.Errorf("scattered line: %+v", f)
	}
	f = fitLine([]float64{0, 0}, []float64{2, 4}) // one x: the mean, no slope
	if !near(f.A, 3) || !math.IsNaN(f.B) {
		t.Errorf("one x: %+v", f)
	}
	if f := fitLine(nil, nil); !math.IsNaN(f.A) {
		t.Errorf("no points: %+v", f)
	}
}

func TestMedian(t *testing.T) {
	v := []float64{3, 1, 2}
	if m := median(v); m != 2 || v[0] != 3 {
		t.Errorf("median %v of %v (must not sort its input)", m, v)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("even median %v", m)
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing")
	}
}

func TestRouteLength(t *testing.T) {
	em := &Emulator{D: testD}
	mk := func(name string) *Link {
		l, err := em.NewLink(name, "127.0.0.1:9")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
		return l
	}
	entry, r1, r2, r3, resp := mk("entry"), mk("r1"), mk("r2"), mk("r3"), mk("resp")
	row := &Row{entry: entry, hops: []*Link{r1, r2, r3}, hopCount: EstNaming("resp:1"), end: resp, endCount: EstConns}
	counts := func(conns, est int64, naming int64) Counts {
		return Counts{Conns: conns, Kinds: [numKinds]int64{KindEst: est}, Naming: map[string]int64{"resp:1": naming}}
	}
	before := Snapshot{entry: counts(5, 0, 0), r1: counts(9, 9, 9), r2: counts(2, 2, 2), r3: counts(0, 0, 0), resp: counts(4, 4, 0)}
	for _, tc := range []struct {
		name  string
		after Snapshot
		want  int
		ok    bool
	}{
		{"two relays", Snapshot{entry: counts(6, 0, 0), r1: counts(10, 10, 10), r2: counts(2, 2, 2), r3: counts(1, 1, 1), resp: counts(5, 5, 0)}, 2, true},
		{"a patrol test and a route elsewhere do not count", Snapshot{entry: counts(6, 0, 0), r1: counts(11, 11, 10), r2: counts(3, 2, 2), r3: counts(0, 0, 0), resp: counts(5, 5, 0)}, 1, true},
		{"a retried route", Snapshot{entry: counts(6, 0, 0), r1: counts(11, 11, 11), r2: counts(2, 2, 2), r3: counts(0, 0, 0), resp: counts(5, 5, 0)}, 0, false},
		{"no route at the responder", Snapshot{entry: counts(6, 0, 0), r1: counts(10, 10, 10), r2: counts(2, 2, 2), r3: counts(0, 0, 0), resp: counts(4, 4, 0)}, 0, false},
		{"two clients", Snapshot{entry: counts(7, 0, 0), r1: counts(10, 10, 10), r2: counts(2, 2, 2), r3: counts(0, 0, 0), resp: counts(5, 5, 0)}, 0, false},
	} {
		l, err := row.routeLength(before, tc.after)
		if (err == nil) != tc.ok || (tc.ok && l != tc.want) {
			t.Errorf("%s: L = %d, %v; want %d (ok %v)", tc.name, l, err, tc.want, tc.ok)
		}
	}
}
