package gunshu

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"
)

// Simulation runs the Dialer's own route choice (pickRoute, with guards
// when asked) and the relays' own choice of successor (nextHop) with
// seeded sources, on a network that exists only as addresses: nothing is
// dialed. It measures what PRIVACY.md asserts.
type Simulation struct {
	// Listed is the number of relays the initiator may use; the manager
	// lists them and the initiator's own relay (its cover).
	Listed int
	// Corrupt is how many of them collude.
	Corrupt int
	// MaxRelays and RouteContinue configure the Dialer as in Dialer.
	MaxRelays     int
	RouteContinue float64
	// Guards is the number of guards; 0 means none.
	Guards int
	Seed   uint64
}

const (
	simInitiator = "192.0.2.1:7000"   // the initiator's own registered relay
	simResponder = "198.51.100.1:443" // not on the manager's list
)

func simRelay(i int) string { return fmt.Sprintf("10.0.%d.%d:7000", i/250, i%250+1) }

// network returns the manager's list: the candidates, then the
// initiator's own relay.
func (s Simulation) network() []string {
	list := make([]string, 0, s.Listed+1)
	for i := range s.Listed {
		list = append(list, simRelay(i))
	}
	return append(list, simInitiator)
}

func (s Simulation) dialer(seed uint64) *Dialer {
	d := &Dialer{
		MaxRelays:     s.MaxRelays,
		RouteContinue: s.RouteContinue,
		Cover:         simInitiator,
		Rand:          rand.NewPCG(seed, seed^0x9e3779b97f4a7c15),
	}
	if s.Guards > 0 {
		start := time.Unix(1e9, 0) // guards never expire within a simulation
		d.Guards = &Guards{Count: s.Guards, Now: func() time.Time { return start }}
	}
	d.init()
	return d
}

// observation is what the first corrupt relay of a route sees.
type observation struct {
	received    int    // entries in the list it received
	predecessor string // who sent it
}

// walk builds one route with d and follows it hop by hop, as the relays
// would, showing see what each relay on it observes. It returns how many
// relays the route holds.
func walk(d *Dialer, listed []string, see func(relay string, o observation)) (int, error) {
	first, list, err := d.pickRoute(listed, simResponder)
	if err != nil {
		return 0, err
	}
	pred, cur, received := simInitiator, first, list
	for hops := 1; ; hops++ {
		see(cur, observation{received: len(received), predecessor: pred})
		next, rest := nextHop(d.rnd, received)
		if next == simResponder {
			return hops, nil
		}
		pred, cur, received = cur, next, rest
	}
}

// firstCorrupt walks one route and returns the observation of its first
// corrupt relay (received 0 when none is on it).
func firstCorrupt(d *Dialer, listed []string, corrupt map[string]bool) (int, observation, error) {
	var obs observation
	hops, err := walk(d, listed, func(relay string, o observation) {
		if corrupt[relay] && obs.received == 0 {
			obs = o
		}
	})
	return hops, obs, err
}

// RouteTally counts what the corrupt relays saw over simulated routes.
type RouteTally struct {
	Routes int
	// Observed[m-1] counts routes whose first corrupt relay received m
	// entries; FirstHop[m-1] those of them where it was the first hop.
	// (EveryRelay counts every relay's observation.)
	Observed, FirstHop []int
	// Relays is the sum of route lengths, OverEight the routes longer
	// than 8 relays.
	Relays, OverEight int
}

// Exposure reads the figures of an Exposure off the simulated routes
// alone (Listed and Corrupt stay zero): the posterior of each list size
// is the share of its observations made by the first hop.
func (t RouteTally) Exposure() Exposure {
	var e Exposure
	total, first := 0, 0
	for m, obs := range t.Observed {
		total += obs
		first += t.FirstHop[m]
	}
	for m, obs := range t.Observed {
		if obs > 0 && 2*t.FirstHop[m] > obs {
			e.Revealing += float64(obs) / float64(total)
		}
	}
	e.MeanPosterior = float64(first) / float64(total)
	e.MeanRoute = float64(t.Relays) / float64(t.Routes)
	e.OverEight = float64(t.OverEight) / float64(t.Routes)
	return e
}

// Routes simulates n routes to one responder from one initiator, the
// corrupt relays being the first Corrupt candidates.
func (s Simulation) Routes(n int) (RouteTally, error) {
	d := s.dialer(s.Seed)
	relays := d.usable(s.network())
	corrupt := make(map[string]bool, s.Corrupt)
	for i := range s.Corrupt {
		corrupt[simRelay(i)] = true
	}
	t := RouteTally{Routes: n, Observed: make([]int, s.Listed), FirstHop: make([]int, s.Listed)}
	for range n {
		hops, obs, err := firstCorrupt(d, relays, corrupt)
		if err != nil {
			return t, err
		}
		t.add(hops, obs)
	}
	return t, nil
}

// EveryRelay simulates n routes as Routes does with one corrupt relay,
// but counts the observations of every relay on each route. Relays are
// alike, so each in turn plays the one corrupt relay: the figures are
// those of one corrupt relay, from about Listed times more observations.
func (s Simulation) EveryRelay(n int) (RouteTally, error) {
	d := s.dialer(s.Seed)
	relays := d.usable(s.network())
	t := RouteTally{Routes: n, Observed: make([]int, s.Listed), FirstHop: make([]int, s.Listed)}
	for range n {
		hops, err := walk(d, relays, func(_ string, o observation) { t.count(o) })
		if err != nil {
			return t, err
		}
		t.add(hops, observation{})
	}
	return t, nil
}

// add counts a route of hops relays and its observation, if any.
func (t *RouteTally) add(hops int, obs observation) {
	t.Relays += hops
	if hops > 8 {
		t.OverEight++
	}
	if obs.received > 0 {
		t.count(obs)
	}
}

func (t *RouteTally) count(obs observation) {
	t.Observed[obs.received-1]++
	if obs.predecessor == simInitiator {
		t.FirstHop[obs.received-1]++
	}
}

// AttackResult is the outcome of simulated predecessor attacks.
type AttackResult struct {
	Trials, Identified int
}

// Rate is the share of trials in which the initiator was identified.
func (r AttackResult) Rate() float64 { return float64(r.Identified) / float64(r.Trials) }

// PredecessorAttack simulates trials of the attack of Wright et al.: in
// each, a fresh initiator (with fresh guards) opens sessions routes to
// one responder, Corrupt relays drawn at random collude and count the
// predecessors the first of them on each route sees, and name the one
// seen most often. The attack succeeds when that is the initiator.
func (s Simulation) PredecessorAttack(sessions, trials int) (AttackResult, error) {
	relays := s.network()
	pick := rand.New(rand.NewPCG(s.Seed, 0x5eed))
	res := AttackResult{Trials: trials}
	for trial := range trials {
		d := s.dialer(s.Seed + uint64(trial)*0x100000001)
		listed := d.usable(relays)
		corrupt := make(map[string]bool, s.Corrupt)
		for _, i := range pick.Perm(s.Listed)[:s.Corrupt] {
			corrupt[simRelay(i)] = true
		}
		seen := make(map[string]int)
		for range sessions {
			_, obs, err := firstCorrupt(d, listed, corrupt)
			if err != nil {
				return res, err
			}
			if obs.received > 0 {
				seen[obs.predecessor]++
			}
		}
		if mostSeen(seen, pick) == simInitiator {
			res.Identified++
		}
	}
	return res, nil
}

// mostSeen returns the key counted most often, ties broken at random
// (keys in order, so that a seed gives one answer).
func mostSeen(seen map[string]int, rnd *rand.Rand) string {
	best, ties, name := -1, 0, ""
	for _, a := range slices.Sorted(maps.Keys(seen)) {
		switch c := seen[a]; {
		case c > best:
			best, ties, name = c, 1, a
		case c == best:
			ties++
			if rnd.IntN(ties) == 0 {
				name = a
			}
		}
	}
	return name
}
