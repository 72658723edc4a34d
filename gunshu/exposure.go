package gunshu

// Exposure is what colluding corrupt relays learn about who opens routes,
// computed exactly from a route-size law (see ComputeExposure).
type Exposure struct {
	// Listed is the number of candidate relays, Corrupt how many of them
	// collude.
	Listed, Corrupt int
	// Posterior[m-1] is the probability that the predecessor of the first
	// corrupt relay on a route is the initiator, given that this relay
	// received a list of m entries.
	Posterior []float64
	// Observed[m-1] is the share of observations (routes through at least
	// one corrupt relay) in which it received m entries.
	Observed []float64
	// Revealing is the share of observations in which the predecessor is
	// more likely than not the initiator.
	Revealing float64
	// MeanPosterior is the mean of Posterior over observations: the
	// chance that a corrupt relay on a route is its first hop.
	MeanPosterior float64
	// MeanRoute is the mean number of relays on a route.
	MeanRoute float64
	// OverEight is the share of routes longer than 8 relays.
	OverEight float64
}

// ComputeExposure evaluates a route-size law (law[k-1] = P(k relays
// offered)) against corrupt colluding relays among listed candidates,
// when the initiator is itself a registered relay (it has cover) and
// never lists itself.
//
// The route is a uniformly random sequence of distinct candidates whose
// length is uniform on 1..k given k, and the first corrupt relay on it
// sees its predecessor and a list of m = k-i+1 entries when it holds
// position i. Honest relays, the initiator among them, are alike to the
// corrupt ones, so the posterior depends on m alone: the sum over k and i
// below is exact, not sampled.
func ComputeExposure(law []float64, listed, corrupt int) Exposure {
	e := Exposure{Listed: listed, Corrupt: corrupt}
	bound := len(law)
	for k, p := range law {
		e.MeanRoute += p * float64(k+2) / 2
		if k+1 > 8 {
			e.OverEight += p * float64(k+1-8) / float64(k+1)
		}
	}
	if corrupt <= 0 || listed <= 0 || bound == 0 {
		return e
	}
	corrupt = min(corrupt, listed)
	// firstCorruptAt[i-1]: P(positions 1..i-1 honest and position i
	// corrupt), for a route of at least i relays.
	firstCorruptAt := make([]float64, bound)
	honest := 1.0
	for i := 1; i <= bound && i <= listed; i++ {
		firstCorruptAt[i-1] = honest * float64(corrupt) / float64(listed-i+1)
		honest *= float64(max(0, listed-corrupt-i+1)) / float64(listed-i+1)
	}
	e.Posterior = make([]float64, bound)
	e.Observed = make([]float64, bound)
	var total, first float64
	for m := 1; m <= bound; m++ {
		var atFirst, later float64
		for i := 1; m+i-1 <= bound; i++ {
			k := m + i - 1
			// P(k offered) · P(route reaches position i | k) · P(first
			// corrupt relay at i).
			p := law[k-1] * float64(m) / float64(k) * firstCorruptAt[i-1]
			if i == 1 {
				atFirst = p
			} else {
				later += p
			}
		}
		if atFirst+later > 0 {
			e.Posterior[m-1] = atFirst / (atFirst + later)
		}
		e.Observed[m-1] = atFirst + later
		total += atFirst + later
		first += atFirst
	}
	if total == 0 {
		return e
	}
	for m := range e.Observed {
		e.Observed[m] /= total
		if e.Posterior[m] > 0.5 {
			e.Revealing += e.Observed[m]
		}
	}
	e.MeanPosterior = first / total
	return e
}
