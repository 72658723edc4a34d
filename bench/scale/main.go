// Command scale runs a Gunshu network of thousands of relays on this
// machine and measures its managers: patrol rounds, reg and list under
// churn, CPU and memory, and how fast deaths and joins reach the lists.
//
//	go run ./bench/scale -tree /path/to/baseline -tree .
//
// Each -tree is a checkout whose examples/caddy is built and run as the
// managers (3 by default, sharing one redis-server started for the run).
// The relays are the bench's own light ones, spread over child processes
// (this program, run as "scale relays"), each on its own loopback
// address 127.A.B.C, eight to a /24, so max_per_ip and max_per_network
// keep their defaults; they answer test themselves and hand est to a
// gunshu.Relay. bench/scale/run.sh is the usual way in; bench/README.md
// has the figures.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type treeFlags []string

func (t *treeFlags) String() string     { return strings.Join(*t, ",") }
func (t *treeFlags) Set(v string) error { *t = append(*t, v); return nil }

func main() {
	if len(os.Args) > 1 && os.Args[1] == "relays" {
		if err := relayChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "scale relays:", err)
			os.Exit(1)
		}
		return
	}
	var trees treeFlags
	cfg := Config{Progress: os.Stderr}
	flag.Var(&trees, "tree", "a checkout to build the managers from (repeat: the first is the baseline); default .")
	flag.IntVar(&cfg.Relays, "relays", 10000, "relays at the start")
	flag.IntVar(&cfg.PerChild, "per-child", 3500, "relays per child process at most (each holds a listener, and a connection per exchange)")
	flag.IntVar(&cfg.Managers, "managers", 3, "managers (Caddy processes) sharing the Redis registry")
	flag.IntVar(&cfg.Entrances, "entrances", 4, "entrances asking for the list")
	flag.DurationVar(&cfg.ListEvery, "list-every", 200*time.Millisecond, "time between two lists of one entrance")
	flag.DurationVar(&cfg.RouteEvery, "route-every", time.Second, "time between two routes of one entrance (a gunshu.Dialer with the default list_ttl)")
	flag.DurationVar(&cfg.PatrolInterval, "patrol-interval", 30*time.Second, "the managers' patrol_interval")
	flag.DurationVar(&cfg.RegisterEvery, "register-every", time.Minute, "time between two reg of one relay (± 10 %)")
	flag.Float64Var(&cfg.ChurnPerMinute, "churn", 0.01, "fraction of the relays that die, and that join, each minute")
	flag.DurationVar(&cfg.Duration, "duration", 3*time.Minute, "measured window, after the list filled")
	flag.DurationVar(&cfg.RampTimeout, "ramp-timeout", 3*time.Minute, "longest wait for the list to fill")
	flag.IntVar(&cfg.MaxServices, "max-services", 20000, "the managers' max_services (above relays plus joins)")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "seed of the churn")
	flag.Parse()
	if len(trees) == 0 {
		trees = treeFlags{"."}
	}
	work, err := os.MkdirTemp("", "scalebench-")
	if err != nil {
		fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var results []*Result
	for _, t := range trees {
		r, err := runTree(ctx, t, work, cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale: working directory:", work)
			fatal(err)
		}
		results = append(results, r)
	}
	writeTable(os.Stdout, cfg, results)
	os.RemoveAll(work)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "scale:", err)
	os.Exit(1)
}

// writeTable prints one column per tree, and the ratio of the last to the
// first when there are two or more.
func writeTable(w io.Writer, cfg Config, rs []*Result) {
	fmt.Fprintf(w, "\n%d relays, %d managers, patrol_interval %s, reg every %s, churn %.1f %%/min, window %s\n\n",
		cfg.Relays, cfg.Managers, cfg.PatrolInterval, cfg.RegisterEvery, cfg.ChurnPerMinute*100, rs[0].Window.Round(time.Second))
	fmt.Fprint(w, "| figure |")
	for _, r := range rs {
		fmt.Fprintf(w, " %s |", r.Commit)
	}
	if len(rs) > 1 {
		fmt.Fprint(w, " ratio |")
	}
	fmt.Fprint(w, "\n|---|")
	for range rs {
		fmt.Fprint(w, "---|")
	}
	if len(rs) > 1 {
		fmt.Fprint(w, "---|")
	}
	fmt.Fprintln(w)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	s := func(d time.Duration) float64 { return d.Seconds() }
	rows := []struct {
		name, format string
		value        func(*Result) float64
	}{
		{"relays listed at the end", "%.0f", func(r *Result) float64 { return float64(r.Relays) }},
		{"patrol tests per relay per interval (all managers)", "%.2f", func(r *Result) float64 { return r.TestsPerRelayRound }},
		{"patrol busy, of each interval (s; ≥ longest round)", "%.1f", func(r *Result) float64 { return s(r.PatrolBusy) }},
		{"time between tests of a relay, p50 (s)", "%.1f", func(r *Result) float64 { return s(r.TestGapP50) }},
		{"time between tests of a relay, p99 (s)", "%.1f", func(r *Result) float64 { return s(r.TestGapP99) }},
		{"reg accepted per s", "%.1f", func(r *Result) float64 { return r.RegPerSec }},
		{"reg refused or failed", "%.0f", func(r *Result) float64 { return float64(r.RegFailed) }},
		{"reg p50 (ms)", "%.1f", func(r *Result) float64 { return ms(r.RegP50) }},
		{"reg p99 (ms)", "%.1f", func(r *Result) float64 { return ms(r.RegP99) }},
		{"list p50 (ms)", "%.1f", func(r *Result) float64 { return ms(r.ListP50) }},
		{"list p99 (ms)", "%.1f", func(r *Result) float64 { return ms(r.ListP99) }},
		{"bytes per list", "%.0f", func(r *Result) float64 { return r.ListBytes }},
		{"routes opened and echoed (%)", "%.2f", func(r *Result) float64 { return float64(r.Routes-r.RoutesFailed) / max(1, float64(r.Routes)) * 100 }},
		{"route setup + echo, p50 (ms)", "%.1f", func(r *Result) float64 { return ms(r.RouteP50) }},
		{"route setup + echo, p99 (ms)", "%.1f", func(r *Result) float64 { return ms(r.RouteP99) }},
		{"entrance CPU per list fetch (ms)", "%.2f", func(r *Result) float64 { return ms(r.ListCPU) }},
		{"manager CPU (cores, mean of managers)", "%.2f", func(r *Result) float64 { return r.ManagerCPU }},
		{"manager RSS at the end (MiB)", "%.0f", func(r *Result) float64 { return r.ManagerRSS }},
		{"manager peak RSS (MiB)", "%.0f", func(r *Result) float64 { return r.ManagerHWM }},
		{"Redis memory per relay (bytes)", "%.0f", func(r *Result) float64 { return r.RedisPerRelay }},
		{"dead relays removed within 2 intervals (%)", "%.0f", func(r *Result) float64 { return float64(r.Removed) / max(1, float64(r.Deaths)) * 100 }},
		{"death → removal, p50 (s)", "%.1f", func(r *Result) float64 { return s(r.RemovalP50) }},
		{"death → removal, longest (s)", "%.1f", func(r *Result) float64 { return s(r.RemovalMax) }},
		{"join → listed, p50 (s)", "%.1f", func(r *Result) float64 { return s(r.ListedP50) }},
		{"join → listed, longest (s)", "%.1f", func(r *Result) float64 { return s(r.ListedMax) }},
	}
	for _, row := range rows {
		fmt.Fprintf(w, "| %s |", row.name)
		for _, r := range rs {
			fmt.Fprintf(w, " "+row.format+" |", row.value(r))
		}
		if len(rs) > 1 {
			if a, b := row.value(rs[0]), row.value(rs[len(rs)-1]); a != 0 {
				fmt.Fprintf(w, " %.2f |", b/a)
			} else {
				fmt.Fprint(w, " – |")
			}
		}
		fmt.Fprintln(w)
	}
}
