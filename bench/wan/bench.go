package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Config is one run of the bench.
type Config struct {
	Trees             []string      // checkouts to build Caddy from and measure, side by side
	D                 time.Duration // one-way delay of every link
	AcceptAtHandshake bool          // see Emulator.AcceptAtHandshake
	Relays            int           // relays per network; L ranges over 1..Relays
	Requests          int           // measured requests per row
	Warmup            int           // requests per row before measuring
	Pages             int           // page loads per browser variant; 0 skips the browser
	Seed              uint64        // seeds the bench's own choices
	MaxRelays         int           // max_relays of the entrances the request rows use
	ManagerLink       bool          // put each manager behind a link too
	MaxDuration       time.Duration // no new round starts after this long; 0: no bound
	MaxLate           time.Duration // requests the emulator delivered later than this for are left out of the fits (0 keeps all)
	Chromium          string        // the browser; "" looks for one on PATH
	Work              string        // working directory (builds, configs, logs)
	Progress          io.Writer     // progress lines; nil for none
	Trace             bool          // print every request's route to Progress
}

// Result is one measured request.
type Result struct {
	Row  *Row
	L    int
	TTFB time.Duration
	Late time.Duration // the emulator's latest delivery during the request, against the model
	Err  error         // the request failed, or its route could not be read

	links string // the links' counts during the request, for -trace
}

// PageResult is one page load in headless Chromium.
type PageResult struct {
	Variant *PageVariant
	Timing  PageTiming
	Routes  int64 // route connections the responder's link saw
	Hops    int64 // route connections the relay links saw
	Err     error
}

// Report is everything a run measured.
type Report struct {
	Config   Config
	Trees    []*Tree
	Rows     []*Row
	Results  []Result
	Variants []*PageVariant
	Pages    []PageResult
	Late     Lateness
	LoadAvg  [2]string // at the start and at the end
	Elapsed  time.Duration
}

// Run builds every tree, starts the site, the minimal chain and one Gunshu
// network per tree behind emulated links, then measures the rows and the
// pages in interleaved rounds. On an error after measuring began it
// returns what it measured so far with the error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if len(cfg.Trees) == 0 || cfg.Relays < 1 || cfg.Requests < 1 || cfg.D <= 0 {
		return nil, errors.New("need at least one tree, one relay, one request and a positive delay")
	}
	r := &run{cfg: cfg, rep: &Report{Config: cfg}, start: time.Now(), rnd: rand.New(rand.NewPCG(cfg.Seed, 1))}
	r.deadline = r.start.Add(cfg.MaxDuration)
	if cfg.MaxDuration <= 0 {
		r.deadline = r.start.Add(24 * time.Hour)
	}
	r.rep.LoadAvg[0] = loadAvg()
	defer r.stop()
	if err := r.setUp(ctx); err != nil {
		return nil, err
	}
	if err := r.warmUp(ctx); err != nil {
		return nil, err
	}
	err := r.measureRows(ctx)
	if err == nil {
		r.loadPages(ctx)
	}
	r.rep.Late = r.em.Lateness()
	r.rep.LoadAvg[1] = loadAvg()
	r.rep.Elapsed = time.Since(r.start)
	return r.rep, cmp.Or(err, ctx.Err())
}

// run is one run of the bench: what it started and where it is.
type run struct {
	cfg      Config
	rep      *Report
	start    time.Time
	deadline time.Time // no new round starts after it
	rnd      *rand.Rand
	browser  string

	em    *Emulator
	site  *Site
	chain *Chain
	nets  []*Network
}

func (r *run) progress(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "# %4.0fs  "+format+"\n", append([]any{time.Since(r.start).Seconds()}, args...)...)
	}
}

// setUp builds the trees and starts everything behind its links.
func (r *run) setUp(ctx context.Context) error {
	cfg := r.cfg
	if cfg.Pages > 0 {
		var err error
		if r.browser, err = findChromium(cfg.Chromium); err != nil {
			return err
		}
	}
	for i, dir := range cfg.Trees {
		r.progress("building Caddy in %s", dir)
		t, err := buildTree(ctx, dir, cfg.Work, i)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(r.rep.Trees, func(o *Tree) bool { return o.Label == t.Label }) {
			t.Label = fmt.Sprintf("%s-%d", t.Label, i+1) // two checkouts of one name
		}
		r.rep.Trees = append(r.rep.Trees, t)
	}
	www := filepath.Join(cfg.Work, "www")
	if err := writeSite(www, cfg.Seed); err != nil {
		return err
	}
	r.progress("starting the site, the minimal chain and %d network(s) of %d relays, d = %v", len(r.rep.Trees), cfg.Relays, cfg.D)
	r.em = &Emulator{D: cfg.D, AcceptAtHandshake: cfg.AcceptAtHandshake, Trace: cfg.Trace}
	var err error
	if r.site, err = startSite(ctx, r.em, r.rep.Trees[0], cfg.Work, www); err != nil {
		return err
	}
	if r.chain, err = startChain(r.em, r.site, cfg.Relays); err != nil {
		return err
	}
	r.rep.Rows = baselineRows(r.site, r.chain.Links)
	for _, t := range r.rep.Trees {
		n, err := startNetwork(ctx, r.em, t, cfg.Work, cfg.Relays, r.site, RouteOptions{MaxRelays: cfg.MaxRelays, ManagerLink: cfg.ManagerLink})
		if err != nil {
			return err
		}
		r.nets = append(r.nets, n)
		r.rep.Rows = append(r.rep.Rows, treeRows(n)...)
	}
	// Probing the fixed entrance's port made it start a route.
	return r.em.WaitIdle(ctx, 30*time.Second)
}

// stop ends what setUp started, the networks first.
func (r *run) stop() {
	for _, n := range r.nets {
		n.Stop()
	}
	if r.chain != nil {
		r.chain.Stop()
	}
	if r.site != nil {
		r.site.Stop()
	}
}

// warmUp makes every row's first requests, which fill caches (the
// entrances' lists, their guards) and are not counted. Only a failed
// request stops the run.
func (r *run) warmUp(ctx context.Context) error {
	r.progress("warm-up: %d request(s) per row", r.cfg.Warmup)
	for range r.cfg.Warmup {
		for _, row := range r.rep.Rows {
			if res, err := measure(ctx, r.em, row, r.rnd); err != nil && res.TTFB == 0 {
				return fmt.Errorf("warm-up, %s %s: %w", row.Name, treeLabel(row.Tree), err)
			}
		}
	}
	r.em.resetLateness()
	return nil
}

// measureRows makes the requests: in each round every row once, in a
// fresh random order.
func (r *run) measureRows(ctx context.Context) error {
	r.progress("measuring: %d rounds of %d rows", r.cfg.Requests, len(r.rep.Rows))
	for round := 0; round < r.cfg.Requests && r.going(ctx); round++ {
		for _, i := range r.rnd.Perm(len(r.rep.Rows)) {
			row := r.rep.Rows[i]
			res, err := measure(ctx, r.em, row, r.rnd)
			res.Err = err
			r.rep.Results = append(r.rep.Results, res)
			if r.cfg.Trace {
				r.progress("%s (%s): L=%d, %.2f RTT, %v; links: %s%s", row.Name, treeLabel(row.Tree), res.L,
					float64(res.TTFB)/float64(2*r.cfg.D), res.Err, res.links, r.em.WindowTrace())
			}
		}
		for _, n := range r.nets {
			if err := n.Alive(); err != nil {
				return err
			}
		}
		if (round+1)%20 == 0 {
			r.progress("round %d of %d", round+1, r.cfg.Requests)
		}
	}
	return nil
}

// loadPages loads the page in a fresh browser per load: in each round
// every variant once, in a fresh random order.
func (r *run) loadPages(ctx context.Context) {
	if r.cfg.Pages <= 0 {
		return
	}
	r.rep.Variants = pageVariants(r.site, r.nets)
	r.progress("browser: %d round(s) of %d page loads", r.cfg.Pages, len(r.rep.Variants))
	for round := 0; round < r.cfg.Pages && r.going(ctx); round++ {
		for _, i := range r.rnd.Perm(len(r.rep.Variants)) {
			profile := filepath.Join(r.cfg.Work, "chromium", fmt.Sprintf("%d-%d", round, i))
			r.rep.Pages = append(r.rep.Pages, r.rep.Variants[i].load(ctx, r.em, r.browser, profile))
			_ = os.RemoveAll(profile)
		}
	}
}

// going reports whether another round may start.
func (r *run) going(ctx context.Context) bool {
	return ctx.Err() == nil && time.Now().Before(r.deadline)
}

// measure makes one request of row and reads its route from the links.
func measure(ctx context.Context, em *Emulator, row *Row, rnd *rand.Rand) (Result, error) {
	res := Result{Row: row}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	before := em.Snapshot()
	em.StartWindow()
	ttfb, err := row.Do(rctx, rnd)
	if err != nil {
		return res, err
	}
	res.TTFB = ttfb
	res.Late = em.WindowLate()
	after := em.Snapshot()
	res.links = before.String(after)
	res.L, err = row.routeLength(before, after)
	return res, err
}

func treeLabel(t *Tree) string {
	if t == nil {
		return "baseline"
	}
	return t.Label
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil || len(b) < 14 {
		return "unknown"
	}
	var a, b5, c string
	if _, err := fmt.Sscan(string(b), &a, &b5, &c); err != nil {
		return "unknown"
	}
	return a + " " + b5 + " " + c
}
