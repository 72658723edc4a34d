// Command privacy prints what corrupt relays learn about who opens Gunshu
// routes, for any network size and number of colluding relays: the exact
// exposure of each route-size rule, the same figures measured on routes
// built by the Dialer's own code, and the predecessor attack with and
// without guards.
//
//	go run ./examples/privacy -n 20 -corrupt 1
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"text/tabwriter"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func main() {
	n := flag.Int("n", 20, "relays the initiator can use (the manager's list less itself)")
	corrupt := flag.Int("corrupt", 1, "colluding corrupt relays among them")
	maxRelays := flag.Int("max-relays", 0, "max_relays of our rule (0: default)")
	cont := flag.Float64("continue", 0, "route_continue of our rule (0: default)")
	routes := flag.Int("routes", 1_000_000, "routes to simulate for the measured line (0: none)")
	sessions := flag.Int("sessions", 100, "sessions per predecessor-attack trial")
	trials := flag.Int("trials", 1000, "predecessor-attack trials (0: none)")
	sizes := flag.Bool("sizes", false, "print the posterior of every list size under our rule")
	seed := flag.Uint64("seed", 1, "seed of the simulations")
	flag.Parse()
	if *n < 1 || *corrupt < 1 || *corrupt > *n {
		fmt.Fprintln(os.Stderr, "privacy: need n ≥ 1 and 1 ≤ corrupt ≤ n")
		os.Exit(2)
	}
	ours := &gunshu.Dialer{MaxRelays: *maxRelays, RouteContinue: *cont}
	if err := ours.ValidateRouteSize(); err != nil {
		fmt.Fprintln(os.Stderr, "privacy:", err)
		os.Exit(2)
	}

	fmt.Printf("N = %d usable relays, %d corrupt; the initiator is a registered relay (cover).\n", *n, *corrupt)
	fmt.Printf("An observation is a route through a corrupt relay; \"revealing\" ones give P(predecessor = initiator) > 1/2.\n\n")
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "route rule\trevealing\tmean posterior\tmean route\troutes > 8 relays\t")
	row := func(name string, e gunshu.Exposure) {
		fmt.Fprintf(w, "%s\t%.2f %%\t%.3f\t%.2f\t%.1f %%\t\n", name, 100*e.Revealing, e.MeanPosterior, e.MeanRoute, 100*e.OverEight)
	}
	row("2003: the whole list", gunshu.ComputeExposure((&gunshu.Dialer{MaxRelays: -1}).RouteSizeLaw(*n), *n, *corrupt))
	row("fixed cap of 5", gunshu.ComputeExposure(gunshu.FixedLaw(min(5, *n)), *n, *corrupt))
	row("geometric r=0.8, bound 20", gunshu.ComputeExposure(gunshu.GeometricLaw(0.8, min(20, *n)), *n, *corrupt))
	law := ours.RouteSizeLaw(*n)
	exact := gunshu.ComputeExposure(law, *n, *corrupt)
	row(fmt.Sprintf("ours: ρ=%.2f, bound %d", continueOf(ours), len(law)), exact)
	if *routes > 0 {
		sim := gunshu.Simulation{Listed: *n, Corrupt: *corrupt, MaxRelays: *maxRelays, RouteContinue: *cont, Seed: *seed}
		simulate := sim.Routes
		if *corrupt == 1 {
			simulate = sim.EveryRelay // every relay in turn plays the corrupt one
		}
		tally, err := simulate(*routes)
		if err != nil {
			fmt.Fprintln(os.Stderr, "privacy:", err)
			os.Exit(1)
		}
		row(fmt.Sprintf("ours, measured on %d routes", *routes), tally.Exposure())
	}
	// Crowds gives every observation the same posterior: all reveal, or none.
	crowds := 1 - continueOf(ours)*float64(*n-*corrupt)/float64(*n+1)
	crowdsRevealing := 0.0
	if crowds > 0.5 {
		crowdsRevealing = 100
	}
	fmt.Fprintf(w, "Crowds, p_f=%.2f, %d members\t%.2f %%\t%.3f\t%.2f\t%.1f %%\t\n", continueOf(ours), *n+1, crowdsRevealing, crowds,
		1/(1-continueOf(ours)), 100*math.Pow(continueOf(ours), 8))
	w.Flush()
	fmt.Printf("\nTargets (one corrupt relay): revealing ≤ %.0f %%, mean posterior ≤ %.2f, mean route ≤ %.1f.\n",
		100*gunshu.TargetRevealing, gunshu.TargetMeanPosterior, gunshu.TargetMeanRoute)
	if msg := ours.RouteSizeWarning(*n); msg != "" {
		fmt.Println("Warning:", msg)
	}
	fmt.Printf("Crowds' probable innocence needs n ≥ p_f/(p_f − ½)·(c+1) = %.1f members.\n",
		continueOf(ours)/(continueOf(ours)-0.5)*float64(*corrupt+1))

	if *sizes {
		fmt.Println("\nOur rule, by size of the list the first corrupt relay receives:")
		w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(w, "entries\tshare of observations\tP(predecessor = initiator)\t")
		for m, p := range exact.Posterior {
			fmt.Fprintf(w, "%d\t%.4f %%\t%.4f\t\n", m+1, 100*exact.Observed[m], p)
		}
		w.Flush()
	}

	if *trials > 0 {
		fmt.Printf("\nPredecessor attack: the corrupt relays count the predecessors they see on %d sessions\n"+
			"to one responder and name the most frequent; %d trials.\n", *sessions, *trials)
		for _, guards := range []int{0, 1} {
			res, err := gunshu.Simulation{Listed: *n, Corrupt: *corrupt, MaxRelays: *maxRelays,
				RouteContinue: *cont, Guards: guards, Seed: *seed}.PredecessorAttack(*sessions, *trials)
			if err != nil {
				fmt.Fprintln(os.Stderr, "privacy:", err)
				os.Exit(1)
			}
			name := "fresh first hops"
			if guards > 0 {
				name = fmt.Sprintf("%d guard", guards)
			}
			fmt.Printf("  %-17s initiator identified in %5.1f %% of trials\n", name+":", 100*res.Rate())
		}
		fmt.Printf("  (chance that a guard is corrupt: %.1f %%)\n", 100*float64(*corrupt)/float64(*n))
	}
}

func continueOf(d *gunshu.Dialer) float64 {
	if d.RouteContinue == 0 {
		return gunshu.DefaultRouteContinue
	}
	return d.RouteContinue
}
