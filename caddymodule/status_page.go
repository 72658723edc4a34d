package caddymodule

import (
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// statusSnapshot is everything the status page shows of one manager; the
// JSON form of the page is this struct.
type statusSnapshot struct {
	Manager   string        `json:"manager"`
	Generated time.Time     `json:"generated"`
	Services  []serviceView `json:"services"`
	// Network is the size of the network and what it hides.
	Network networkView `json:"network"`
	// History is the registry's size, one sample per sample interval, over
	// the last hour.
	History []sizeSample `json:"registry_size_history"`
	// RouteResults are this process's finished routes per role and outcome.
	RouteResults []routeResult `json:"route_results"`
}

// routeResult is one series of caddy_gunshu_route_results_total.
type routeResult struct {
	Role    string `json:"role"`
	Outcome string `json:"outcome"`
	Count   uint64 `json:"count"`
}

func takeSnapshot(ctx context.Context, lm *liveManager) (statusSnapshot, error) {
	snap := statusSnapshot{Manager: lm.name, Generated: time.Now(), History: lm.history.snapshot()}
	m := lm.manager()
	if m == nil {
		return snap, errNotRunning
	}
	services, err := serviceViews(ctx, m)
	if err != nil {
		return snap, err
	}
	snap.Services = services
	snap.Network = newNetworkView(services)
	snap.RouteResults = routeResults()
	return snap, nil
}

// routeResults reads the route counters, sorted by role and outcome.
func routeResults() []routeResult {
	ch := make(chan prometheus.Metric)
	go func() {
		gunshuMetrics.routeResults.Collect(ch)
		close(ch)
	}()
	out := []routeResult{}
	for metric := range ch {
		var pb dto.Metric
		if metric.Write(&pb) != nil {
			continue
		}
		r := routeResult{Count: uint64(pb.GetCounter().GetValue())}
		for _, l := range pb.GetLabel() {
			switch l.GetName() {
			case "role":
				r.Role = l.GetValue()
			case "outcome":
				r.Outcome = l.GetValue()
			}
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Role != out[j].Role {
			return out[i].Role < out[j].Role
		}
		return out[i].Outcome < out[j].Outcome
	})
	return out
}

// Chart geometry, in SVG user units.
const (
	chartWidth, chartHeight = 600, 140
	chartLeft, chartRight   = 36, 8
	chartTop, chartBottom   = 10, 22
)

// chartPoint is one sample placed on the chart.
type chartPoint struct {
	X, Y  float64
	Label string
}

// sizeChart is the registry-size chart: one point per sample, time on x
// over the window ending at now, size on y from zero to the largest.
type sizeChart struct {
	Width, Height int
	Points        []chartPoint
	Line          string // the polyline's points attribute
	YMax          int
	Left, Right   float64
	Top, Bottom   float64
	// LabelY is the baseline of the time labels under the axis.
	LabelY     float64
	StartLabel string
	EndLabel   string
}

func newSizeChart(samples []sizeSample, now time.Time, window time.Duration) sizeChart {
	c := sizeChart{
		Width: chartWidth, Height: chartHeight,
		Left: chartLeft, Right: chartWidth - chartRight,
		Top: chartTop, Bottom: chartHeight - chartBottom, LabelY: chartHeight - 6,
		StartLabel: now.Add(-window).Format("15:04"), EndLabel: now.Format("15:04"),
	}
	for _, s := range samples {
		c.YMax = max(c.YMax, s.Services)
	}
	scale := max(c.YMax, 1)
	start := now.Add(-window)
	var line strings.Builder
	for _, s := range samples {
		frac := float64(s.Time.Sub(start)) / float64(window)
		frac = min(max(frac, 0), 1)
		p := chartPoint{
			X:     c.Left + frac*(c.Right-c.Left),
			Y:     c.Bottom - float64(s.Services)/float64(scale)*(c.Bottom-c.Top),
			Label: fmt.Sprintf("%s: %d services", s.Time.Format("15:04:05"), s.Services),
		}
		c.Points = append(c.Points, p)
		fmt.Fprintf(&line, "%.1f,%.1f ", p.X, p.Y)
	}
	c.Line = strings.TrimSpace(line.String())
	return c
}

// statusPage is the data of the HTML template.
type statusPage struct {
	statusSnapshot
	Chart   sizeChart
	Refresh int
	Targets gunshu.Exposure // the targets of PRIVACY.md, in Exposure's fields
}

// renderStatusPage writes the page: one self-contained HTML document, with
// its style and its chart inline and no external asset.
func renderStatusPage(w io.Writer, snap statusSnapshot) error {
	page := statusPage{
		statusSnapshot: snap,
		Chart:          newSizeChart(snap.History, snap.Generated, historyWindow),
		Refresh:        30,
		Targets: gunshu.Exposure{
			Revealing: gunshu.TargetRevealing, MeanPosterior: gunshu.TargetMeanPosterior, MeanRoute: gunshu.TargetMeanRoute,
		},
	}
	return statusTemplate.Execute(w, page)
}

var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"ms":   func(v *float64) string { return fmt.Sprintf("%.1f ms", *v) },
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"ago": func(now, t time.Time) string {
		return now.Sub(t).Round(time.Second).String() + " ago"
	},
	"percent": func(v float64) string { return strconv.FormatFloat(100*v, 'f', 2, 64) + " %" },
}).Parse(statusPageHTML))

// statusPageHTML is the page's template.
//
//go:embed status_page.html
var statusPageHTML string
