package gunshu_test

import (
	"context"
	"math"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// lawOf returns the route-size law of a Dialer configured by d.
func lawOf(d *gunshu.Dialer, n int) []float64 { return d.RouteSizeLaw(n) }

func TestRouteSizeLawMeetsTargets(t *testing.T) {
	for _, n := range []int{20, 200} {
		e := gunshu.ComputeExposure(lawOf(&gunshu.Dialer{}, n), n, 1)
		t.Logf("N=%d: revealing %.3f%%, mean posterior %.4f, mean route %.3f, over 8 relays %.2f%%",
			n, 100*e.Revealing, e.MeanPosterior, e.MeanRoute, 100*e.OverEight)
		if e.Revealing > gunshu.TargetRevealing {
			t.Errorf("N=%d: %.3f%% of observations reveal the initiator, target %.0f%%", n, 100*e.Revealing, 100*gunshu.TargetRevealing)
		}
		if e.MeanPosterior > gunshu.TargetMeanPosterior {
			t.Errorf("N=%d: mean posterior %.4f, target %.2f", n, e.MeanPosterior, gunshu.TargetMeanPosterior)
		}
		if e.MeanRoute > gunshu.TargetMeanRoute {
			t.Errorf("N=%d: mean route %.3f relays, target %.1f", n, e.MeanRoute, gunshu.TargetMeanRoute)
		}
	}
}

// Below the bound, a relay's list size must tell it nothing: the
// posterior is 1-ρ for every size, and only the largest list reveals.
func TestRouteSizeLawHidesPosition(t *testing.T) {
	for _, rho := range []float64{0.5, gunshu.DefaultRouteContinue, 0.8} {
		d := &gunshu.Dialer{RouteContinue: rho}
		law := lawOf(d, 200)
		if len(law) != gunshu.DefaultMaxRelays {
			t.Fatalf("law has %d sizes, want the bound %d", len(law), gunshu.DefaultMaxRelays)
		}
		e := gunshu.ComputeExposure(law, 200, 1)
		for m, p := range e.Posterior[:len(law)-1] {
			if math.Abs(p-(1-rho)) > 1e-9 {
				t.Errorf("ρ=%v: a relay receiving %d entries is first with probability %.6f, want %.6f", rho, m+1, p, 1-rho)
			}
		}
		if last := e.Posterior[len(law)-1]; last != 1 {
			t.Errorf("ρ=%v: the largest list gives posterior %v, want 1", rho, last)
		}
		// The route length is geometric: P(l+1)/P(l) = ρ.
		length := make([]float64, len(law))
		for k, p := range law {
			for l := 0; l <= k; l++ {
				length[l] += p / float64(k+1)
			}
		}
		for l := 1; l < len(length); l++ {
			if r := length[l] / length[l-1]; math.Abs(r-rho) > 1e-9 {
				t.Errorf("ρ=%v: P(L=%d)/P(L=%d) = %.6f, want ρ", rho, l+1, l, r)
			}
		}
	}
}

// ComputeExposure must reproduce the figures of issue 9 for the rules it
// replaces, which follow from closed forms.
func TestExposureOfOldRules(t *testing.T) {
	const n = 20
	whole := gunshu.ComputeExposure(lawOf(&gunshu.Dialer{MaxRelays: -1}, n), n, 1)
	if want := 2.0 / (n + 1); math.Abs(whole.Revealing-want) > 1e-12 || math.Abs(whole.MeanRoute-10.5) > 1e-12 {
		t.Errorf("2003 rule: revealing %v, mean route %v; want %v, 10.5", whole.Revealing, whole.MeanRoute, want)
	}
	fixed := gunshu.ComputeExposure(gunshu.FixedLaw(5), n, 1)
	if math.Abs(fixed.Revealing-1.0/3) > 1e-12 || math.Abs(fixed.MeanRoute-3) > 1e-12 {
		t.Errorf("fixed cap 5: revealing %v, mean route %v; want 1/3, 3", fixed.Revealing, fixed.MeanRoute)
	}
	geo := gunshu.ComputeExposure(gunshu.GeometricLaw(0.8, 20), n, 1)
	if math.Round(1000*geo.Revealing) != 3 || math.Round(100*geo.MeanPosterior) != 35 || math.Round(10*geo.MeanRoute) != 29 {
		t.Errorf("geometric r=0.8: revealing %v, mean posterior %v, mean route %v; issue 9 gives 0.3%%, 0.35, 2.9",
			geo.Revealing, geo.MeanPosterior, geo.MeanRoute)
	}
}

func TestRouteSizeBounds(t *testing.T) {
	for _, tc := range []struct {
		max, n, want int
	}{{0, 5, 5}, {0, 200, gunshu.DefaultMaxRelays}, {8, 200, 8}, {1, 50, 1}, {-1, 7, 7}, {30, 0, 0}} {
		law := lawOf(&gunshu.Dialer{MaxRelays: tc.max}, tc.n)
		if len(law) != tc.want {
			t.Errorf("MaxRelays %d, %d listed: largest route %d, want %d", tc.max, tc.n, len(law), tc.want)
		}
		sum := 0.0
		for _, p := range law {
			sum += p
		}
		if tc.want > 0 && math.Abs(sum-1) > 1e-12 {
			t.Errorf("MaxRelays %d, %d listed: law sums to %v", tc.max, tc.n, sum)
		}
	}
	whole := lawOf(&gunshu.Dialer{MaxRelays: -1}, 7)
	if whole[6] != 1 {
		t.Errorf("negative MaxRelays must offer the whole list, law %v", whole)
	}
}

func TestValidateRouteSize(t *testing.T) {
	for _, c := range []float64{-0.1, 1, 1.5, math.NaN()} {
		if err := (&gunshu.Dialer{RouteContinue: c}).ValidateRouteSize(); err == nil {
			t.Errorf("RouteContinue %v accepted", c)
		}
	}
	for _, c := range []float64{0, 0.5, 0.9} {
		if err := (&gunshu.Dialer{RouteContinue: c}).ValidateRouteSize(); err != nil {
			t.Errorf("RouteContinue %v: %v", c, err)
		}
	}
}

func TestRouteSizeWarning(t *testing.T) {
	var d gunshu.Dialer
	for _, n := range []int{20, 200} {
		if w := d.RouteSizeWarning(n); w != "" {
			t.Errorf("%d relays listed: unexpected warning %q", n, w)
		}
	}
	for _, n := range []int{0, 3, 6} {
		if w := d.RouteSizeWarning(n); w == "" {
			t.Errorf("%d relays listed: no warning", n)
		}
	}
	low := gunshu.Dialer{MaxRelays: 8}
	if w := low.RouteSizeWarning(200); !strings.Contains(w, "max_relays 8") {
		t.Errorf("max_relays 8 with 200 relays: warning %q", w)
	}
}

// RouteExposure gives PRIVACY.md's figures, and the warning fires exactly
// when they miss a target: operator tools and entrances agree.
func TestRouteExposureIsTheWarningsFigures(t *testing.T) {
	var d gunshu.Dialer
	e := d.RouteExposure(20)
	if math.Abs(e.Revealing-0.0021) > 0.00005 || math.Abs(e.MeanPosterior-0.301) > 0.0005 || math.Abs(e.MeanRoute-3.32) > 0.005 {
		t.Errorf("20 relays: revealing %.4f, mean posterior %.3f, mean route %.2f; PRIVACY.md says 0.0021, 0.301, 3.32",
			e.Revealing, e.MeanPosterior, e.MeanRoute)
	}
	for n := 1; n <= 40; n++ {
		meets := d.RouteExposure(n).MeetsTargets()
		if warned := d.RouteSizeWarning(n) != ""; meets == warned {
			t.Errorf("%d relays: meets targets %v, warned %v", n, meets, warned)
		}
		// PRIVACY.md: the defaults need 15 usable relays.
		if meets != (n >= 15) {
			t.Errorf("%d relays: meets targets %v", n, meets)
		}
	}
}

// A Dialer whose manager lists too few relays says so once, not per route.
func TestDialerWarnsOfTooFewRelays(t *testing.T) {
	n := testnet.New(t, 3)
	responder := testnet.EchoResponder(t)
	core, logs := observer.New(zap.WarnLevel)
	d := n.Dialer(1)
	d.Logger, d.ListTTL = zap.New(core), -1
	for range 3 {
		conn, err := d.DialContext(context.Background(), responder)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	warned := logs.FilterMessage("routes reveal their first hop").All()
	if len(warned) != 1 {
		t.Fatalf("%d warnings for 3 routes, want 1", len(warned))
	}
	if why := warned[0].ContextMap()["why"].(string); !strings.Contains(why, "3 usable relays") {
		t.Errorf("warning %q does not say how many relays are listed", why)
	}
}
