// Command wan measures how long Gunshu routes take to carry a request on
// emulated WAN links, in link round trips, against a direct connection
// and a chain of minimal relays, in one run.
//
//	go run ./bench/wan -tree . -tree /path/to/other/checkout
//
// Every relay, the responder, each entrance and the web site sit behind
// their own emulated link (see link.go for the model); relays advertise
// their link's address, so every hop of a route crosses a link. The parts
// under test are real Caddy processes built from each tree with
// `go build ./examples/caddy`; the clients, the link emulator and the
// minimal relays are the bench's own and import nothing of any tree.
// bench/wan/run.sh is the usual way in; bench/README.md has the figures.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// treeFlags collects -tree, which may repeat.
type treeFlags []string

func (t *treeFlags) String() string     { return strings.Join(*t, ",") }
func (t *treeFlags) Set(v string) error { *t = append(*t, v); return nil }

func main() {
	var trees treeFlags
	cfg := Config{Progress: os.Stderr}
	flag.Var(&trees, "tree", "a checkout to build Caddy from and measure (repeat to compare trees side by side; the first is the baseline); default .")
	flag.DurationVar(&cfg.D, "d", 10*time.Millisecond, "one-way delay of every link")
	flag.BoolVar(&cfg.AcceptAtHandshake, "accept-at-handshake", false, "dial a link's far side 3d after the client connected, when TCP would accept, instead of at once (issue #14's model)")
	flag.IntVar(&cfg.Relays, "relays", 6, "relays per network (and minimal relays): L ranges over 1..relays")
	flag.IntVar(&cfg.Requests, "requests", 120, "measured requests per row")
	flag.IntVar(&cfg.Warmup, "warmup", 2, "requests per row before measuring")
	flag.IntVar(&cfg.Pages, "pages", 7, "page loads per browser variant (0: no browser)")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "seed of the bench's own random choices")
	flag.IntVar(&cfg.MaxRelays, "max-relays", -1, "max_relays of the entrances the request rows use (-1: the whole list, so L is uniform)")
	flag.BoolVar(&cfg.ManagerLink, "manager-link", false, "put the manager behind a link too (by default it is reached directly: entrances keep its list 5 s)")
	flag.DurationVar(&cfg.MaxLate, "max-late", 5*time.Millisecond, "leave out of the fits a request for which the emulator delivered a byte this much later than the model (a busy machine); 0 keeps all")
	flag.DurationVar(&cfg.MaxDuration, "max-duration", 40*time.Minute, "start no new round after this long")
	flag.StringVar(&cfg.Chromium, "chromium", "", "the browser (default: chromium on PATH)")
	csvPath := flag.String("csv", "", "also write every request and page load to this CSV file")
	flag.BoolVar(&cfg.Trace, "trace", false, "print every request's time, the links its route crossed and what each link delivered when")
	keep := flag.Bool("keep", false, "keep the working directory (configs, Caddy logs)")
	flag.Parse()
	if len(trees) == 0 {
		trees = treeFlags{"."}
	}
	cfg.Trees = trees

	work, err := os.MkdirTemp("", "wanbench-")
	if err != nil {
		fatal(err)
	}
	cfg.Work = work
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rep, err := Run(ctx, cfg)
	stop()
	if rep != nil && len(rep.Results) > 0 {
		rep.WriteText(os.Stdout)
		if *csvPath != "" {
			if werr := writeCSVFile(*csvPath, rep); werr != nil {
				fmt.Fprintln(os.Stderr, "wan:", werr)
			}
		}
	}
	if *keep || err != nil {
		fmt.Fprintln(os.Stderr, "wan: working directory (configs, logs):", work)
	} else {
		os.RemoveAll(work)
	}
	if err != nil {
		fatal(err)
	}
}

func writeCSVFile(path string, rep *Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := rep.WriteCSV(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "wan:", err)
	os.Exit(1)
}
