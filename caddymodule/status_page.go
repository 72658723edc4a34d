package caddymodule

import (
	"context"
	"fmt"
	"html/template"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// statusSnapshot is everything the status page shows of one manager; the
// JSON form of the page is this struct.
type statusSnapshot struct {
	Manager   string        `json:"manager"`
	Generated time.Time     `json:"generated"`
	Services  []serviceView `json:"services"`
	Healthy   int           `json:"healthy"`
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
	for _, s := range services {
		if s.Health == "healthy" {
			snap.Healthy++
		}
	}
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
}

// renderStatusPage writes the page: one self-contained HTML document, with
// its style and its chart inline and no external asset.
func renderStatusPage(w io.Writer, snap statusSnapshot) error {
	page := statusPage{
		statusSnapshot: snap,
		Chart:          newSizeChart(snap.History, snap.Generated, historyWindow),
		Refresh:        30,
	}
	return statusTemplate.Execute(w, page)
}

var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"ms":   func(v *float64) string { return fmt.Sprintf("%.1f ms", *v) },
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"ago": func(now, t time.Time) string {
		return now.Sub(t).Round(time.Second).String() + " ago"
	},
}).Parse(statusHTML))

const statusHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{{.Refresh}}">
<title>Gunshu manager {{.Manager}}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:980px;padding:0 1rem;color:#1d2330;background:#fafbfc}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.05rem;margin:1.8rem 0 .5rem}
.sub{color:#5b6475;margin:0 0 1rem}
.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{background:#fff;border:1px solid #dfe3ea;border-radius:6px;padding:.6rem 1rem;min-width:9rem}
.card b{display:block;font-size:1.5rem}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dfe3ea}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #eef0f4;font-variant-numeric:tabular-nums}
th{background:#f2f4f7;font-weight:600}
.healthy{color:#17803d}.failing{color:#b42318}.untested{color:#8a6d00}
svg{background:#fff;border:1px solid #dfe3ea;border-radius:6px;max-width:100%;height:auto}
.empty{color:#5b6475;font-style:italic}
</style>
</head>
<body>
<h1>Gunshu manager <code>{{.Manager}}</code></h1>
<p class="sub">Generated {{when .Generated}} &middot; refreshes every {{.Refresh}} s &middot; <a href="?format=json">JSON</a></p>
<div class="cards">
<div class="card"><b id="service-count">{{len .Services}}</b>services</div>
<div class="card"><b id="healthy-count">{{.Healthy}}</b>healthy</div>
</div>

<h2>Registry size, last hour</h2>
<svg id="size-chart" xmlns="http://www.w3.org/2000/svg" width="{{.Chart.Width}}" height="{{.Chart.Height}}" viewBox="0 0 {{.Chart.Width}} {{.Chart.Height}}" role="img" aria-label="registry size over the last hour">
<line x1="{{.Chart.Left}}" y1="{{.Chart.Bottom}}" x2="{{.Chart.Right}}" y2="{{.Chart.Bottom}}" stroke="#c5cbd6"/>
<line x1="{{.Chart.Left}}" y1="{{.Chart.Top}}" x2="{{.Chart.Right}}" y2="{{.Chart.Top}}" stroke="#eef0f4"/>
<text x="{{.Chart.Left}}" y="{{.Chart.LabelY}}" font-size="11" fill="#5b6475">{{.Chart.StartLabel}}</text>
<text x="{{.Chart.Right}}" y="{{.Chart.LabelY}}" font-size="11" fill="#5b6475" text-anchor="end">{{.Chart.EndLabel}}</text>
<text x="{{.Chart.Left}}" y="{{.Chart.Top}}" dx="-6" dy="4" font-size="11" fill="#5b6475" text-anchor="end">{{.Chart.YMax}}</text>
<text x="{{.Chart.Left}}" y="{{.Chart.Bottom}}" dx="-6" dy="4" font-size="11" fill="#5b6475" text-anchor="end">0</text>
{{if .Chart.Line}}<polyline points="{{.Chart.Line}}" fill="none" stroke="#2f6fde" stroke-width="2"/>{{end}}
{{range .Chart.Points}}<circle class="sample" cx="{{printf "%.1f" .X}}" cy="{{printf "%.1f" .Y}}" r="3" fill="#2f6fde"><title>{{.Label}}</title></circle>
{{end}}</svg>

<h2>Services</h2>
{{if .Services}}<table id="services">
<thead><tr><th>Address</th><th>Health</th><th>Test latency</th><th>Failures in a row</th><th>First registered</th><th>Last registered</th></tr></thead>
<tbody>
{{range .Services}}<tr><td><code>{{.Address}}</code></td><td class="{{.Health}}">{{.Health}}</td><td>{{if .LastTestLatencyMS}}{{ms .LastTestLatencyMS}}{{else}}&ndash;{{end}}</td><td>{{.ConsecutiveFailures}}</td><td>{{when .FirstRegistered}}</td><td>{{ago $.Generated .LastRegistered}}</td></tr>
{{end}}</tbody>
</table>{{else}}<p class="empty">No service is registered.</p>{{end}}

<h2>Route outcomes <small class="sub">(this Caddy process, since it started)</small></h2>
{{if .RouteResults}}<table id="routes">
<thead><tr><th>Role</th><th>Outcome</th><th>Routes</th></tr></thead>
<tbody>
{{range .RouteResults}}<tr><td>{{.Role}}</td><td>{{.Outcome}}</td><td>{{.Count}}</td></tr>
{{end}}</tbody>
</table>{{else}}<p class="empty">No route has finished in this process yet.</p>{{end}}
</body>
</html>
`
