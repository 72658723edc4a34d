package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// rowStats is one row's measured requests, in RTT.
type rowStats struct {
	row    *Row
	ls     []float64 // route length of each request
	ttfb   []float64 // its time to first byte, in RTT
	byL    map[int][]float64
	failed []error
	late   int // left out: the emulator ran late during the request
	fit    Fit // least squares over every request kept
	medFit Fit // least squares over the median of each L: a load spike moves it less
}

func (rep *Report) rtt() time.Duration { return 2 * rep.Config.D }

func (rep *Report) rowStats() []*rowStats {
	stats := make([]*rowStats, len(rep.Rows))
	index := make(map[*Row]*rowStats, len(rep.Rows))
	for i, r := range rep.Rows {
		stats[i] = &rowStats{row: r, byL: map[int][]float64{}}
		index[r] = stats[i]
	}
	for _, res := range rep.Results {
		s := index[res.Row]
		if res.Err != nil {
			s.failed = append(s.failed, res.Err)
			continue
		}
		if rep.Config.MaxLate > 0 && res.Late > rep.Config.MaxLate {
			s.late++
			continue
		}
		y := float64(res.TTFB) / float64(rep.rtt())
		s.ls = append(s.ls, float64(res.L))
		s.ttfb = append(s.ttfb, y)
		s.byL[res.L] = append(s.byL[res.L], y)
	}
	for _, s := range stats {
		s.fit = fitLine(s.ls, s.ttfb)
		var ls, meds []float64
		for l, v := range s.byL {
			ls = append(ls, float64(l))
			meds = append(meds, median(v))
		}
		s.medFit = fitLine(ls, meds)
	}
	return stats
}

// WriteText prints the run, the table of fits, the medians by route
// length and the page loads, as Markdown.
func (rep *Report) WriteText(w io.Writer) {
	cfg := rep.Config
	accept := "the far side accepts at once (issue #14's model)"
	if cfg.AcceptAtHandshake {
		accept = "the far side accepts at 3d (-accept-at-handshake)"
	}
	manager := "the manager reached directly"
	if cfg.ManagerLink {
		manager = "the manager behind a link too"
	}
	fmt.Fprintf(w, "WAN model: d = %v each way (RTT %v), a new connection delivers no byte before 3d, %s; %d relays per network, %s; %d requests per row (after %d warm-up); seed %d\n",
		cfg.D, rep.rtt(), accept, cfg.Relays, manager, cfg.Requests, cfg.Warmup, cfg.Seed)
	for _, t := range rep.Trees {
		fmt.Fprintf(w, "tree %s: %s at %s\n", t.Label, t.Dir, t.Commit)
	}
	fmt.Fprintf(w, "load average %s at the start, %s at the end; %v in all\n", rep.LoadAvg[0], rep.LoadAvg[1], rep.Elapsed.Round(time.Second))
	fmt.Fprintf(w, "emulator: %d deliveries, %v late on average against the model, %v at most, %d more than 1 ms late\n\n",
		rep.Late.Deliveries, rep.Late.Mean.Round(time.Microsecond), rep.Late.Max.Round(time.Microsecond), rep.Late.OverMs)

	stats := rep.rowStats()
	rep.writeFits(w, stats)
	writeMedians(w, stats)
	rep.writeComparison(w, stats)
	rep.writeFailures(w, stats)
	rep.writePages(w)
}

// writeFits prints the a + b·L table.
func (rep *Report) writeFits(w io.Writer, stats []*rowStats) {
	fmt.Fprintf(w, "Time to first response byte ≈ a + b·L: least squares over every request (± one standard error), and over the median of each L; in RTT. Left out: failed, and requests the emulator ran more than %v late for (load).\n\n", rep.Config.MaxLate)
	fmt.Fprintf(w, "| variant | tree | a (RTT) | b (RTT per relay) | a, b over medians | at L = 3 (RTT) | requests per L | left out: failed, late |\n|---|---|---|---|---|---|---|---|\n")
	for _, s := range stats {
		a, b, med, at3 := "", "", "", ""
		if s.row.Fit {
			a, b, med, at3 = pm(s.fit.A, s.fit.SEA), pm(s.fit.B, s.fit.SEB), num(s.medFit.A)+", "+num(s.medFit.B), num(s.fit.At(3))
		} else {
			a = num(s.fit.A) + " (mean)"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %d, %d |\n", s.row.Name, treeLabel(s.row.Tree), a, b, med, at3, countsByL(s.byL), len(s.failed), s.late)
	}
}

// writeMedians prints each row's median by route length.
func writeMedians(w io.Writer, stats []*rowStats) {
	maxL := 0
	for _, s := range stats {
		for l := range s.byL {
			maxL = max(maxL, l)
		}
	}
	fmt.Fprintf(w, "\nMedian time to first byte by route length L, in RTT:\n\n| variant | tree |")
	for l := 0; l <= maxL; l++ {
		fmt.Fprintf(w, " L=%d |", l)
	}
	fmt.Fprintf(w, "\n|---|---|%s\n", strings.Repeat("---|", maxL+1))
	for _, s := range stats {
		fmt.Fprintf(w, "| %s | %s |", s.row.Name, treeLabel(s.row.Tree))
		for l := 0; l <= maxL; l++ {
			cell := ""
			if v := s.byL[l]; len(v) > 0 {
				cell = num(median(v))
			}
			fmt.Fprintf(w, " %s |", cell)
		}
		fmt.Fprintln(w)
	}
}

// writeComparison prints, when several trees ran, each tree's fit next to
// the first tree's.
func (rep *Report) writeComparison(w io.Writer, stats []*rowStats) {
	if len(rep.Trees) < 2 {
		return
	}
	base := rep.Trees[0]
	fmt.Fprintf(w, "\nAgainst %s in the same run (least squares; at L = 3 also as a ratio new / %s):\n\n| variant | tree | a | b | b over medians | at L = 3 |\n|---|---|---|---|---|---|\n", base.Label, base.Label)
	byName := map[string]*rowStats{}
	for _, s := range stats {
		if s.row.Tree == base {
			byName[s.row.Name] = s
		}
	}
	for _, s := range stats {
		b, ok := byName[s.row.Name]
		if s.row.Tree == nil || s.row.Tree == base || !ok {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s → %s | %s → %s | %s → %s | %s → %s (×%s) |\n", s.row.Name, s.row.Tree.Label,
			num(b.fit.A), num(s.fit.A), num(b.fit.B), num(s.fit.B), num(b.medFit.B), num(s.medFit.B),
			num(b.fit.At(3)), num(s.fit.At(3)), num(s.fit.At(3)/b.fit.At(3)))
	}
}

func (rep *Report) writeFailures(w io.Writer, stats []*rowStats) {
	for _, s := range stats {
		if len(s.failed) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s (%s): %d request(s) failed or had no clean route, first: %v\n", s.row.Name, treeLabel(s.row.Tree), len(s.failed), s.failed[0])
	}
}

func (rep *Report) writePages(w io.Writer) {
	if len(rep.Variants) == 0 {
		return
	}
	fmt.Fprintf(w, "\nHeadless Chromium, a page of %d images (fresh profile each load), Navigation Timing, in RTT:\n\n", pageImages)
	fmt.Fprintf(w, "| page loaded through | tree | loads | load event, median (min–max) | first byte of the page, median | routes per page | mean L |\n|---|---|---|---|---|---|---|\n")
	for _, v := range rep.Variants {
		var load, first []float64
		var routes, hops int64
		failed := 0
		var firstErr error
		for _, p := range rep.Pages {
			if p.Variant != v {
				continue
			}
			if p.Err != nil {
				failed++
				firstErr = cmpOr(firstErr, p.Err)
				continue
			}
			load = append(load, p.Timing.Load/float64(rep.rtt().Milliseconds()))
			first = append(first, p.Timing.FirstByte/float64(rep.rtt().Milliseconds()))
			routes += p.Routes
			hops += p.Hops
		}
		perPage, meanL := "—", "—"
		if v.net != nil && len(load) > 0 {
			perPage = num(float64(routes) / float64(len(load)))
			if routes > 0 {
				meanL = num(float64(hops) / float64(routes))
			}
		}
		lo, hi := math.NaN(), math.NaN()
		if len(load) > 0 {
			lo, hi = slices.Min(load), slices.Max(load)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s (%s–%s) | %s | %s | %s |\n", v.Name, treeLabel(v.Tree), len(load),
			num(median(load)), num(lo), num(hi), num(median(first)), perPage, meanL)
		if failed > 0 {
			fmt.Fprintf(w, "|  ↳ %d load(s) failed, first: %s | | | | | | |\n", failed, strings.ReplaceAll(firstErr.Error(), "\n", " "))
		}
	}
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// WriteCSV writes every request and every page load, one a line.
func (rep *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"kind", "variant", "tree", "L", "ms", "rtt", "emulator_late_ms", "routes", "hops", "error"})
	rtt := float64(rep.rtt()) / float64(time.Millisecond)
	for _, r := range rep.Results {
		ms := float64(r.TTFB) / float64(time.Millisecond)
		_ = cw.Write([]string{"request", r.Row.Name, treeLabel(r.Row.Tree), strconv.Itoa(r.L),
			ff(ms), ff(ms / rtt), ff(float64(r.Late) / float64(time.Millisecond)), "", "", errText(r.Err)})
	}
	for _, p := range rep.Pages {
		_ = cw.Write([]string{"page", p.Variant.Name, treeLabel(p.Variant.Tree), "",
			ff(p.Timing.Load), ff(p.Timing.Load / rtt), "", strconv.FormatInt(p.Routes, 10), strconv.FormatInt(p.Hops, 10), errText(p.Err)})
	}
	cw.Flush()
	return cw.Error()
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func ff(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }

func num(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func pm(v, se float64) string {
	if math.IsNaN(se) {
		return num(v)
	}
	return num(v) + " ± " + num(se)
}

// countsByL is "L=1: 20, L=2: 19, …" in order of L.
func countsByL(byL map[int][]float64) string {
	ls := make([]int, 0, len(byL))
	for l := range byL {
		ls = append(ls, l)
	}
	slices.Sort(ls)
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = fmt.Sprintf("%d:%d", l, len(byL[l]))
	}
	return strings.Join(parts, " ")
}
