package main

import (
	"math"
	"slices"
)

// Fit is the least-squares line y = A + B·x with the standard errors of
// both coefficients.
type Fit struct {
	A, B     float64
	SEA, SEB float64
	N        int
}

// fitLine fits y = a + b·x by least squares. With fewer than two distinct
// x it returns the mean as A and NaN for B.
func fitLine(xs, ys []float64) Fit {
	n := len(xs)
	f := Fit{N: n, A: math.NaN(), B: math.NaN(), SEA: math.NaN(), SEB: math.NaN()}
	if n == 0 {
		return f
	}
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(n)
	my /= float64(n)
	var sxx, sxy float64
	for i := range xs {
		sxx += (xs[i] - mx) * (xs[i] - mx)
		sxy += (xs[i] - mx) * (ys[i] - my)
	}
	if sxx == 0 {
		f.A = my
		return f
	}
	f.B = sxy / sxx
	f.A = my - f.B*mx
	if n > 2 {
		var rss float64
		for i := range xs {
			r := ys[i] - f.A - f.B*xs[i]
			rss += r * r
		}
		s2 := rss / float64(n-2)
		f.SEB = math.Sqrt(s2 / sxx)
		f.SEA = math.Sqrt(s2 * (1/float64(n) + mx*mx/sxx))
	}
	return f
}

// At is the fitted y at x.
func (f Fit) At(x float64) float64 { return f.A + f.B*x }

// median of v (NaN for none); v is not changed.
func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
