package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
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
// pages in interleaved rounds.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if len(cfg.Trees) == 0 || cfg.Relays < 1 || cfg.Requests < 1 || cfg.D <= 0 {
		return nil, errors.New("need at least one tree, one relay, one request and a positive delay")
	}
	start := time.Now()
	rep := &Report{Config: cfg}
	rep.LoadAvg[0] = loadAvg()
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "# %4.0fs  "+format+"\n", append([]any{time.Since(start).Seconds()}, args...)...)
		}
	}

	for i, dir := range cfg.Trees {
		progress("building Caddy in %s", dir)
		t, err := buildTree(ctx, dir, cfg.Work, i)
		if err != nil {
			return nil, err
		}
		rep.Trees = append(rep.Trees, t)
	}

	em := &Emulator{D: cfg.D, AcceptAtHandshake: cfg.AcceptAtHandshake}
	www := filepath.Join(cfg.Work, "www")
	if err := writeSite(www, cfg.Seed); err != nil {
		return nil, err
	}
	progress("starting the site, the minimal chain and %d network(s) of %d relays, d = %v", len(rep.Trees), cfg.Relays, cfg.D)
	site, err := startSite(ctx, em, rep.Trees[0], cfg.Work, www)
	if err != nil {
		return nil, err
	}
	defer site.Stop()
	chain, err := startChain(em, site, cfg.Relays)
	if err != nil {
		return nil, err
	}
	defer chain.Stop()
	rep.Rows = baselineRows(site, chain.Links)
	var nets []*Network
	defer func() {
		for _, n := range nets {
			n.Stop()
		}
	}()
	for _, t := range rep.Trees {
		n, err := startNetwork(ctx, em, t, cfg.Work, cfg.Relays, site, RouteOptions{MaxRelays: cfg.MaxRelays})
		if err != nil {
			return nil, err
		}
		nets = append(nets, n)
		rep.Rows = append(rep.Rows, treeRows(n)...)
	}

	// Probing the fixed entrance's port made it start a route.
	if err := em.WaitIdle(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	rnd := rand.New(rand.NewPCG(cfg.Seed, 1))
	progress("warm-up: %d request(s) per row", cfg.Warmup)
	for range cfg.Warmup {
		for _, row := range rep.Rows {
			// Only a failed request stops the run: the warm-up's routes
			// are not counted.
			res, err := measure(ctx, em, row, rnd)
			if err != nil && res.TTFB == 0 {
				return nil, fmt.Errorf("warm-up, %s %s: %w", row.Name, treeLabel(row.Tree), err)
			}
		}
	}
	em.resetLateness()
	deadline := start.Add(cfg.MaxDuration)
	if cfg.MaxDuration <= 0 {
		deadline = start.Add(24 * time.Hour)
	}
	progress("measuring: %d rounds of %d rows", cfg.Requests, len(rep.Rows))
	for round := 0; round < cfg.Requests && ctx.Err() == nil && time.Now().Before(deadline); round++ {
		for _, i := range rnd.Perm(len(rep.Rows)) {
			row := rep.Rows[i]
			res, err := measure(ctx, em, row, rnd)
			res.Err = err
			rep.Results = append(rep.Results, res)
			if cfg.Trace {
				progress("%s (%s): L=%d, %.2f RTT, %v; links: %s", row.Name, treeLabel(row.Tree), res.L,
					float64(res.TTFB)/float64(2*cfg.D), res.Err, res.links)
			}
		}
		if err := networksAlive(nets); err != nil {
			return rep, err
		}
		if (round+1)%20 == 0 {
			progress("round %d of %d", round+1, cfg.Requests)
		}
	}

	if cfg.Pages > 0 {
		browser, err := findChromium(cfg.Chromium)
		if err != nil {
			return nil, err
		}
		rep.Variants = pageVariants(site, nets)
		progress("browser: %d round(s) of %d page loads", cfg.Pages, len(rep.Variants))
		for round := 0; round < cfg.Pages && ctx.Err() == nil && time.Now().Before(deadline); round++ {
			for _, i := range rnd.Perm(len(rep.Variants)) {
				v := rep.Variants[i]
				profile := filepath.Join(cfg.Work, "chromium", fmt.Sprintf("%d-%d", round, i))
				rep.Pages = append(rep.Pages, v.load(ctx, em, browser, profile))
				_ = os.RemoveAll(profile)
			}
		}
	}
	rep.Late = em.Lateness()
	rep.LoadAvg[1] = loadAvg()
	rep.Elapsed = time.Since(start)
	return rep, ctx.Err()
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

func networksAlive(nets []*Network) error {
	for _, n := range nets {
		if err := n.Alive(); err != nil {
			return err
		}
	}
	return nil
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

// Chain is the minimal relays, each behind its own link, the last one's
// next hop the site's link.
type Chain struct {
	Links  []*Link
	relays []*MinRelay
}

func startChain(em *Emulator, site *Site, n int) (*Chain, error) {
	c := &Chain{Links: make([]*Link, n)}
	next := site.Link.Addr()
	for i := n - 1; i >= 0; i-- {
		r, err := StartMinRelay(next)
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.relays = append(c.relays, r)
		if c.Links[i], err = em.NewLink(fmt.Sprintf("minimal%d", i+1), r.Addr()); err != nil {
			c.Stop()
			return nil, err
		}
		next = c.Links[i].Addr()
	}
	return c, nil
}

// Stop closes the relays and their links.
func (c *Chain) Stop() {
	for _, r := range c.relays {
		r.Close()
	}
	for _, l := range c.Links {
		if l != nil {
			l.Close()
		}
	}
}

// Stop ends the site's Caddy and closes its link.
func (s *Site) Stop() {
	s.proc.Stop()
	s.Link.Close()
}
