package gunshu

import (
	"fmt"
	"math"
	"testing"
)

// The Dialer's real route choice, followed hop by hop with the relays'
// real choice of successor, must produce what ComputeExposure predicts
// and meet the targets of issue 9.
func TestSimulatedRoutesMeetTargets(t *testing.T) {
	// With 200 relays one corrupt relay is on 1 route in 60: there every
	// relay's observations count, each relay in turn playing the corrupt one.
	for _, tc := range []struct {
		listed, routes int
		every          bool
	}{{20, 1_000_000, false}, {200, 200_000, true}} {
		t.Run(fmt.Sprintf("N=%d", tc.listed), func(t *testing.T) {
			t.Parallel()
			sim := Simulation{Listed: tc.listed, Corrupt: 1, Seed: 9}
			simulate := sim.Routes
			if tc.every {
				simulate = sim.EveryRelay
			}
			tally, err := simulate(tc.routes)
			if err != nil {
				t.Fatal(err)
			}
			compareWithExact(t, tally)
		})
	}
}

// compareWithExact checks simulated routes against the exact exposure of
// the default law, and against the targets.
func compareWithExact(t *testing.T, tally RouteTally) {
	listed, routes := len(tally.Observed), tally.Routes
	got := tally.Exposure()
	want := ComputeExposure((&Dialer{}).RouteSizeLaw(listed), listed, 1)
	t.Logf("N=%d, %d routes: revealing %.3f%% (exact %.3f%%), mean posterior %.4f (%.4f), mean route %.3f (%.3f), over 8 relays %.2f%% (%.2f%%)",
		listed, routes, 100*got.Revealing, 100*want.Revealing, got.MeanPosterior, want.MeanPosterior,
		got.MeanRoute, want.MeanRoute, 100*got.OverEight, 100*want.OverEight)
	if got.Revealing > TargetRevealing || got.MeanPosterior > TargetMeanPosterior || got.MeanRoute > TargetMeanRoute {
		t.Errorf("N=%d: simulated routes miss a target", listed)
	}
	observations := 0
	for _, o := range tally.Observed {
		observations += o
	}
	// Each list size is seen as often as the exact law says, within
	// five standard deviations.
	for m, share := range want.Observed {
		expect := share * float64(observations)
		if dev := math.Abs(float64(tally.Observed[m]) - expect); dev > 5*math.Sqrt(expect)+1 {
			t.Errorf("N=%d: list of %d entries seen %d times, exact law expects %.0f", listed, m+1, tally.Observed[m], expect)
		}
		expectFirst := want.Posterior[m] * float64(tally.Observed[m])
		if dev := math.Abs(float64(tally.FirstHop[m]) - expectFirst); dev > 5*math.Sqrt(expectFirst)+1 {
			t.Errorf("N=%d: list of %d entries received by the first hop %d times, expected %.0f", listed, m+1, tally.FirstHop[m], expectFirst)
		}
	}
	sd := math.Sqrt(want.MeanPosterior * (1 - want.MeanPosterior) / float64(observations))
	if math.Abs(got.MeanPosterior-want.MeanPosterior) > 5*sd {
		t.Errorf("N=%d: simulated mean posterior %.4f, exact %.4f", listed, got.MeanPosterior, want.MeanPosterior)
	}
	// Route lengths are uniform on 1..k given k: E[L²|k] = (k+1)(2k+1)/6.
	square := 0.0
	for k, p := range (&Dialer{}).RouteSizeLaw(listed) {
		square += p * float64((k+2)*(2*k+3)) / 6
	}
	sdRoute := math.Sqrt((square - want.MeanRoute*want.MeanRoute) / float64(routes))
	if math.Abs(got.MeanRoute-want.MeanRoute) > 5*sdRoute {
		t.Errorf("N=%d: simulated mean route %.3f, exact %.3f", listed, got.MeanRoute, want.MeanRoute)
	}
}

// The same measurement catches the leak of the 2003 rule: it can fail.
func TestSimulationDetectsWholeListLeak(t *testing.T) {
	t.Parallel()
	tally, err := Simulation{Listed: 20, Corrupt: 1, MaxRelays: -1, Seed: 3}.Routes(50_000)
	if err != nil {
		t.Fatal(err)
	}
	got := tally.Exposure()
	t.Logf("2003 rule, N=20: revealing %.2f%%, mean route %.2f", 100*got.Revealing, got.MeanRoute)
	if math.Abs(got.Revealing-2.0/21) > 0.01 || math.Abs(got.MeanRoute-10.5) > 0.1 {
		t.Errorf("2003 rule: revealing %.4f, mean route %.2f; want 2/21, 10.5", got.Revealing, got.MeanRoute)
	}
}

// Colluding relays counting predecessors over 100 sessions find an
// initiator that picks fresh first hops; one with a guard is found only
// when the guard is itself corrupt (2 in 20).
func TestPredecessorAttack(t *testing.T) {
	t.Parallel()
	const listed, corrupt, sessions, trials = 20, 2, 100, 1000
	fresh, err := Simulation{Listed: listed, Corrupt: corrupt, Seed: 5}.PredecessorAttack(sessions, trials)
	if err != nil {
		t.Fatal(err)
	}
	guarded, err := Simulation{Listed: listed, Corrupt: corrupt, Guards: 1, Seed: 5}.PredecessorAttack(sessions, trials)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d sessions, %d trials: identified %.1f%% with fresh first hops, %.1f%% with a guard",
		sessions, trials, 100*fresh.Rate(), 100*guarded.Rate())
	if fresh.Rate() < 0.9 {
		t.Errorf("fresh first hops: identified in %.1f%% only; the attack simulation is broken", 100*fresh.Rate())
	}
	guardCorrupt := float64(corrupt) / listed
	sd := math.Sqrt(guardCorrupt * (1 - guardCorrupt) / trials)
	if guarded.Rate() > guardCorrupt+4*sd {
		t.Errorf("guard: identified in %.1f%%, more than the %.0f%% chance that the guard is corrupt", 100*guarded.Rate(), 100*guardCorrupt)
	}
}

// BenchmarkPickRoute: the cost of choosing one route, the 2003 rule as
// baseline beside ours with and without a guard.
func BenchmarkPickRoute(b *testing.B) {
	for _, n := range []int{20, 200} {
		for _, cfg := range []struct {
			name      string
			maxRelays int
			guards    int
		}{{"2003", -1, 0}, {"ours", 0, 0}, {"ours+guard", 0, 1}} {
			b.Run(fmt.Sprintf("N=%d/%s", n, cfg.name), func(b *testing.B) {
				sim := Simulation{Listed: n, MaxRelays: cfg.maxRelays, Guards: cfg.guards, Seed: 1}
				d := sim.dialer(1)
				listed := d.usable(sim.network())
				for b.Loop() {
					if _, _, err := d.pickRoute(listed, simResponder); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
