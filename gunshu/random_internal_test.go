package gunshu

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestSampleIsUniform: Sample(list, 2) of 5 entries gives each of the 20
// ordered pairs equally often, as shuffling and keeping two does. Seeded:
// the outcome is fixed; 19 degrees of freedom, critical value at 1e-6 is
// 72.4.
func TestSampleIsUniform(t *testing.T) {
	rnd := newRandom(rand.NewPCG(1, 2))
	const draws = 40000
	counts := map[string]int{}
	for range draws {
		got := rnd.Sample([]string{"a", "b", "c", "d", "e"}, 2)
		if len(got) != 2 || got[0] == got[1] {
			t.Fatalf("sample %q", got)
		}
		counts[strings.Join(got, "")]++
	}
	if len(counts) != 20 {
		t.Fatalf("%d distinct ordered pairs, want 20", len(counts))
	}
	want := float64(draws) / 20
	var chi2 float64
	for _, c := range counts {
		chi2 += (float64(c) - want) * (float64(c) - want) / want
	}
	if chi2 > 72.4 {
		t.Fatalf("chi-square %.1f over 19 degrees of freedom: not uniform", chi2)
	}
}

// TestSampleShortList: a list shorter than k comes back whole, with the
// default (secure) source and a seeded one.
func TestSampleShortList(t *testing.T) {
	for _, rnd := range []*random{newRandom(nil), newRandom(rand.NewPCG(3, 4))} {
		got := rnd.Sample([]string{"a", "b", "c"}, 10)
		slices.Sort(got)
		if !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("got %q, want the 3 entries", got)
		}
	}
}

// TestSecureSampleCoversTheList: the default source samples every entry
// of a long list. 64 of 100 drawn 200 times: an entry is left out of all
// with probability 0.36^200.
func TestSecureSampleCoversTheList(t *testing.T) {
	rnd := newRandom(nil)
	list := make([]string, 100)
	seen := map[string]bool{}
	for range 200 {
		for i := range list {
			list[i] = strconv.Itoa(i)
		}
		got := rnd.Sample(list, 64)
		if len(got) != 64 {
			t.Fatalf("%d entries, want 64", len(got))
		}
		for _, a := range got {
			seen[a] = true
		}
	}
	if len(seen) != 100 {
		t.Fatalf("%d of 100 entries ever sampled", len(seen))
	}
}
