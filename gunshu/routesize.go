package gunshu

import (
	"fmt"
	"math"
)

// Route-size defaults. See PRIVACY.md for the figures behind them.
const (
	// DefaultMaxRelays bounds the relays offered to one route. A relay
	// that receives the largest possible list knows it is the first hop,
	// so the bound must sit where the law has almost no mass left.
	DefaultMaxRelays = 20
	// DefaultRouteContinue is the chance that a relay of a route hands it
	// on to another relay rather than to the responder: Crowds' p_f.
	DefaultRouteContinue = 0.7
)

// routeSizeLaw is the distribution of how many of n candidate relays one
// route is offered: law[k-1] is the probability of offering k. It is the
// one place where that choice is made; routeSize samples it and the
// exposure analysis evaluates it.
//
// The law is P(k) ∝ k·ρ^(k-1) below the bound K and P(K) ∝ K·ρ^(K-1)/(1-ρ),
// with ρ = RouteContinue. Since each relay picks its successor uniformly,
// the route then holds l relays with probability ∝ ρ^(l-1): every relay
// passes the route on with probability ρ whatever list it received, as in
// Crowds. A relay receiving m < K entries is first with probability
// exactly 1-ρ, so neither the size nor the contents of its list tell it
// more about its position than the law itself; only m = K reveals it.
func (d *Dialer) routeSizeLaw(n int) []float64 {
	if n <= 0 {
		return nil
	}
	law := make([]float64, n)
	if d.MaxRelays < 0 { // the 2003 rule: the whole list, always
		law[n-1] = 1
		return law
	}
	bound := d.MaxRelays
	if bound == 0 {
		bound = DefaultMaxRelays
	}
	bound = min(bound, n)
	law = law[:bound]
	rho := d.routeContinue()
	total := 0.0
	for k := 1; k <= bound; k++ {
		p := float64(k) * math.Pow(rho, float64(k-1))
		if k == bound {
			p /= 1 - rho
		}
		law[k-1] = p
		total += p
	}
	for i := range law {
		law[i] /= total
	}
	return law
}

func (d *Dialer) routeContinue() float64 {
	if d.RouteContinue == 0 {
		return DefaultRouteContinue
	}
	return d.RouteContinue
}

// routeSize draws how many of n candidate relays one route is offered.
func (d *Dialer) routeSize(n int) int {
	d.mu.Lock()
	if d.lawFor != n || d.law == nil {
		d.law, d.lawFor = d.routeSizeLaw(n), n
	}
	law := d.law
	d.mu.Unlock()
	u := d.rnd.Float64()
	for k, p := range law {
		if u < p {
			return k + 1
		}
		u -= p
	}
	return len(law) // u fell past the last term by rounding
}

// RouteSizeLaw returns the distribution of how many relays the Dialer
// offers a route when n relays are candidates: element k-1 is the
// probability of offering k. Analysis tools read it; routes sample it.
func (d *Dialer) RouteSizeLaw(n int) []float64 { return d.routeSizeLaw(n) }

// Route-size targets for one corrupt relay (issue 9, PRIVACY.md).
const (
	TargetRevealing     = 0.01 // share of observations with P(predecessor is initiator) > 1/2
	TargetMeanPosterior = 0.35 // mean of that probability
	TargetMeanRoute     = 3.5  // relays per route
)

// ValidateRouteSize reports a route-size configuration that cannot work.
func (d *Dialer) ValidateRouteSize() error {
	if math.IsNaN(d.RouteContinue) || d.RouteContinue < 0 || d.RouteContinue >= 1 {
		return fmt.Errorf("route_continue %v: must be at least 0 and below 1", d.RouteContinue)
	}
	return nil
}

// RouteSizeWarning returns why routes chosen from listed candidate relays
// (the manager's list less this initiator and the responder) would tell a
// corrupt relay too much about its position, or "" when they meet every
// target. Entrances log it; the Dialer logs it itself when a fetched
// list crosses the line.
func (d *Dialer) RouteSizeWarning(listed int) string {
	if listed <= 0 {
		return "the manager lists no relay this initiator can use"
	}
	e := d.RouteExposure(listed)
	if e.MeetsTargets() {
		return ""
	}
	return fmt.Sprintf("with %d usable relays listed (max_relays %d, route_continue %.2f), one corrupt relay "+
		"can tell it is the first hop in %.1f%% of its observations (target %.0f%%; mean posterior %.2f, target %.2f; "+
		"mean route %.1f relays): register more relays or raise max_relays",
		listed, d.boundFor(listed), d.routeContinue(), 100*e.Revealing, 100*TargetRevealing,
		e.MeanPosterior, TargetMeanPosterior, e.MeanRoute)
}

// RouteExposure is what one corrupt relay learns from the routes this
// Dialer chooses among listed candidate relays: the figures that
// RouteSizeWarning holds against the targets, for operator tools to show.
func (d *Dialer) RouteExposure(listed int) Exposure {
	return ComputeExposure(d.routeSizeLaw(listed), listed, 1)
}

// MeetsTargets reports whether e is within every route-size target.
func (e Exposure) MeetsTargets() bool {
	return e.Revealing <= TargetRevealing && e.MeanPosterior <= TargetMeanPosterior && e.MeanRoute <= TargetMeanRoute
}

// boundFor is the largest route offered when n relays are candidates.
func (d *Dialer) boundFor(n int) int { return len(d.routeSizeLaw(n)) }

// FixedLaw is the route-size law of a fixed cap: every route is offered
// k relays. It and GeometricLaw are other rules' laws, for comparison
// with ours (PRIVACY.md, examples/privacy).
func FixedLaw(k int) []float64 {
	law := make([]float64, k)
	law[k-1] = 1
	return law
}

// GeometricLaw offers k relays with P(k) ∝ r^(k-1) on 1..bound: the rule
// issue 9 proposed.
func GeometricLaw(r float64, bound int) []float64 {
	law := make([]float64, bound)
	total := 0.0
	for k := range law {
		law[k] = math.Pow(r, float64(k))
		total += law[k]
	}
	for k := range law {
		law[k] /= total
	}
	return law
}
