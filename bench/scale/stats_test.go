package main

import (
	"testing"
	"time"
)

// TestRelayIPs: relay addresses are distinct, eight to a /24, none on
// 127.0.0.0/24 (where the managers and Redis listen).
func TestRelayIPs(t *testing.T) {
	seen := map[string]bool{}
	perNet := map[[3]byte]int{}
	for i := range 20000 {
		ip := relayIP(i)
		if seen[ip.String()] {
			t.Fatalf("relay %d: %s taken", i, ip)
		}
		seen[ip.String()] = true
		b := ip.As4()
		if b[0] != 127 || b[1] == 0 {
			t.Fatalf("relay %d: %s", i, ip)
		}
		perNet[[3]byte{b[0], b[1], b[2]}]++
	}
	for n, c := range perNet {
		if c > 8 {
			t.Fatalf("%v.0/24 holds %d relays", n, c)
		}
	}
}

// TestFillPatrol: two relays tested once per 10 s interval, both within
// the first second of it, over three intervals.
func TestFillPatrol(t *testing.T) {
	from := time.Unix(1000, 0)
	interval := 10 * time.Second
	ev := events{tests: map[int][]int64{}}
	for k := range 3 {
		base := from.Add(time.Duration(k) * interval)
		ev.tests[0] = append(ev.tests[0], base.Add(200*time.Millisecond).UnixNano())
		ev.tests[1] = append(ev.tests[1], base.Add(750*time.Millisecond).UnixNano())
	}
	r := &Result{Relays: 2}
	fillPatrol(r, ev, from, from.Add(3*interval), interval)
	if r.TestsPerRelayRound != 1 {
		t.Errorf("tests per relay per interval %v, want 1", r.TestsPerRelayRound)
	}
	if r.PatrolBusy != 200*time.Millisecond {
		t.Errorf("busy %v, want the two 100 ms slots", r.PatrolBusy)
	}
	if r.TestGapP50 != interval || r.TestGapP99 != interval {
		t.Errorf("gaps %v / %v, want %v", r.TestGapP50, r.TestGapP99, interval)
	}
}
