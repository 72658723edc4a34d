package soak

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// report is what a soak measured.
type report struct {
	duration, every       time.Duration
	relays, clients       int
	minEstablished        float64
	tally                 tally
	actions               []action
	before, after         map[string]stats
	loadBefore, loadAfter string
}

// established is the share of sessions whose route was built: every one
// but those that failed before a byte came back (or hung).
func (r report) established() float64 {
	all := r.tally.all()
	if all == 0 {
		return 0
	}
	return float64(all-r.tally.total(setupFailed)-r.tally.total(hung)) / float64(all)
}

// Drift allowed between the rest before and after: a few descriptors and
// goroutines (Caddy's own idle connections, a patrol or registration in
// flight), and a quarter more resident memory (the Go heap's growth).
const (
	fdSlack        = 8
	goroutineSlack = 16
	rssGrowth      = 1.25
)

// problems lists what breaks #18's bar.
func (r report) problems() []string {
	var out []string
	if n := r.tally.total(corrupted); n > 0 {
		out = append(out, fmt.Sprintf("%d corrupted streams", n))
	}
	if n := r.tally.total(hung); n > 0 {
		out = append(out, fmt.Sprintf("%d sessions hung past route_timeout + idle_timeout (%v)", n, hungAfter))
	}
	if e := r.established(); e < r.minEstablished {
		out = append(out, fmt.Sprintf("%.2f%% of new sessions established, want at least %.0f%%", 100*e, 100*r.minEstablished))
	}
	for _, role := range slices.Sorted(maps.Keys(r.after)) {
		b, ok := r.before[role]
		if !ok {
			continue
		}
		a := r.after[role]
		if a.own() > b.own()+fdSlack {
			out = append(out, fmt.Sprintf("%s: %d descriptors (besides pooled Redis connections and pipes) after the soak, %d before: %v, before %v",
				role, a.own(), b.own(), a.peers, b.peers))
		}
		if a.goroutines > b.goroutines+goroutineSlack {
			out = append(out, fmt.Sprintf("%s: %d goroutines after the soak, %d before", role, a.goroutines, b.goroutines))
		}
		if float64(a.rss) > rssGrowth*float64(b.rss) {
			out = append(out, fmt.Sprintf("%s: resident memory %s after the soak, %s before", role, mib(a.rss), mib(b.rss)))
		}
	}
	for _, a := range r.actions {
		if a.err != nil {
			out = append(out, fmt.Sprintf("chaos action %q on %s failed: %v", a.what, a.target, a.err))
		}
	}
	return out
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func (r report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Soak: %v of %d clients over %d relays, 3 managers on Redis with Sentinel, a chaos action every %v (±25 %%); load average %s before, %s after.\n\n",
		r.duration, r.clients, r.relays, r.every, r.loadBefore, r.loadAfter)
	fmt.Fprintf(&b, "| entrance | sessions | ok | setup failed | broken mid-stream | corrupted | hung |\n|---|---|---|---|---|---|---|\n")
	for m := range modes {
		c := r.tally.counts[m]
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d |\n", m, r.tally.sessions(m), c[ok], c[setupFailed], c[broken], c[corrupted], c[hung])
	}
	fmt.Fprintf(&b, "| all | %d | %d | %d | %d | %d | %d |\n\n", r.tally.all(), r.tally.total(ok), r.tally.total(setupFailed),
		r.tally.total(broken), r.tally.total(corrupted), r.tally.total(hung))
	fmt.Fprintf(&b, "New sessions established: %.2f%%; %.1f MiB echoed.\n\n", 100*r.established(), float64(r.tally.bytes)/(1<<20))

	counts := map[string]int{}
	for _, a := range r.actions {
		counts[a.what]++
	}
	after := r.failuresAfter()
	fmt.Fprintf(&b, "| chaos action | times | failed sessions that ended before the next action |\n|---|---|---|\n")
	for _, what := range []string{killRelay, stopRelay, restartRelay, reloadRelay, killManager, failoverRedis} {
		fmt.Fprintf(&b, "| %s | %d | %d |\n", what, counts[what], after[what])
	}
	if n := after[""]; n > 0 {
		fmt.Fprintf(&b, "| (before the first action) | | %d |\n", n)
	}
	fmt.Fprintf(&b, "\n| process (ran throughout) | own fds before → after | pooled: Redis connections, splice pipes | goroutines before → after | RSS before → after |\n|---|---|---|---|---|\n")
	for _, role := range slices.Sorted(maps.Keys(r.after)) {
		bf, okB := r.before[role]
		af := r.after[role]
		if !okB {
			continue
		}
		fmt.Fprintf(&b, "| %s | %d → %d | %d, %d → %d, %d | %d → %d | %s → %s |\n", role, bf.own(), af.own(),
			bf.redisConns, bf.pipes, af.redisConns, af.pipes, bf.goroutines, af.goroutines, mib(bf.rss), mib(af.rss))
	}
	fmt.Fprintf(&b, "\nActions:\n\n")
	for _, a := range r.actions {
		line := fmt.Sprintf("- %6.1fs %s: %s", a.at.Seconds(), a.what, a.target)
		if a.err != nil {
			line += fmt.Sprintf(" (error: %v)", a.err)
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// failuresAfter counts the failed sessions by the chaos action that came
// last before each ended ("" before the first).
func (r report) failuresAfter() map[string]int {
	out := map[string]int{}
	for _, f := range r.tally.failed {
		last := ""
		for _, a := range r.actions {
			if a.when.After(f) {
				break
			}
			if a.err == nil && a.what != "start again" && a.what != "start Redis again" {
				last = a.what
			}
		}
		out[last]++
	}
	return out
}
