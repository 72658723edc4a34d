// Command load drives many concurrent checksummed sessions through Gunshu
// relays that run as separate processes, and reports errors, peak RSS,
// goroutines and file descriptors of every process before, at the peak
// and after.
//
//	go run ./bench/load -sessions 10000 -relays 3 -mode random
//
// Mode random builds routes as initiators do (a manager's list, every
// hop choosing at random, so a route holds 1 to 3 relays); mode chain
// sends every session through all relays in order, which costs each
// relay two file descriptors per session.
//
// The program starts its own children (-role relay, -role responder)
// from its own executable; everything listens on 127.0.0.1.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func main() {
	role := flag.String("role", "driver", "driver, relay or responder")
	sessions := flag.Int("sessions", 10000, "concurrent sessions")
	relays := flag.Int("relays", 3, "relay processes")
	mode := flag.String("mode", "random", "random (routes as initiators build them) or chain (every session through every relay)")
	size := flag.Int("bytes", 16<<10, "bytes sent (and echoed) per session")
	parallel := flag.Int("parallel", 256, "routes being established at once")
	first := flag.Bool("first", false, "relay: always extend to the first entry (chain mode)")
	baseline := flag.Bool("baseline", true, "first run the same sessions straight to the responder, for ratios")
	flag.Parse()
	switch *role {
	case "relay":
		child(func(ln net.Listener, stop <-chan struct{}) {
			r := &gunshu.Relay{Policy: gunshu.Policy{Allow: []string{"127.0.0.0/8"}}}
			if *first {
				r.Rand = firstSource{}
			}
			go func() { <-stop; ln.Close(); _ = r.Close() }()
			_ = r.Serve(ln)
		})
	case "responder":
		child(serveEcho)
	case "driver":
		var base timing
		if *baseline {
			var err error
			if base, err = drive(*sessions, 0, "direct", *size, *parallel); err != nil {
				fmt.Fprintln(os.Stderr, "load: baseline:", err)
				os.Exit(1)
			}
			fmt.Println()
		}
		t, err := drive(*sessions, *relays, *mode, *size, *parallel)
		if *baseline && t.setup > 0 {
			fmt.Printf("\nvs direct baseline: setup %.2fx, transfer %.2fx\n",
				t.setup.Seconds()/base.setup.Seconds(), t.transfer.Seconds()/base.transfer.Seconds())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "load:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "load: unknown role", *role)
		os.Exit(2)
	}
}

// firstSource makes a relay extend every route to the first entry of its
// list (see gunshu's fault tests).
type firstSource struct{}

func (firstSource) Uint64() uint64 { return 1 << 32 }

// child listens, prints its address, serves, and answers "stats" lines on
// stdin with a JSON line; it stops when stdin closes.
func child(serve func(net.Listener, <-chan struct{})) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out := json.NewEncoder(os.Stdout)
	_ = out.Encode(map[string]string{"addr": ln.Addr().String()})
	stop := make(chan struct{})
	go serve(ln, stop)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		_ = out.Encode(ownStats())
	}
	close(stop)
}

func serveEcho(ln net.Listener, stop <-chan struct{}) {
	rl := (&gunshu.Responder{}).Listen(ln, 4096)
	go func() { <-stop; rl.Close() }()
	for {
		c, err := rl.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
		}()
	}
}

// stats describes one process at one moment.
type stats struct {
	Goroutines int   `json:"goroutines"`
	FDs        int   `json:"fds"`
	PipeFDs    int   `json:"pipe_fds"` // the splice pipes, pooled or in use
	RSSKiB     int64 `json:"rss_kib"`
	PeakRSSKiB int64 `json:"peak_rss_kib"`
}

func ownStats() stats {
	s := stats{Goroutines: runtime.NumGoroutine()}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.FDs = len(fds)
		for _, fd := range fds {
			if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, "pipe:") {
				s.PipeFDs++
			}
		}
	}
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			var kib int64
			if n, _ := fmt.Sscanf(line, "VmRSS: %d kB", &kib); n == 1 {
				s.RSSKiB = kib
			}
			if n, _ := fmt.Sscanf(line, "VmHWM: %d kB", &kib); n == 1 {
				s.PeakRSSKiB = kib
			}
		}
	}
	return s
}

// proc is a child process the driver talks to.
type proc struct {
	name string
	addr string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
}

func start(name string, args ...string) (*proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, in: in, out: bufio.NewReader(out)}
	var hello map[string]string
	if err := p.readJSON(&hello); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p.addr = hello["addr"]
	return p, nil
}

func (p *proc) readJSON(v any) error {
	line, err := p.out.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

func (p *proc) stats() stats {
	var s stats
	if _, err := io.WriteString(p.in, "stats\n"); err == nil {
		_ = p.readJSON(&s)
	}
	return s
}

func (p *proc) stop() {
	p.in.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// result counts outcomes by kind.
type result struct {
	mu     sync.Mutex
	errs   map[string]int
	ok     atomic.Int64
	opened atomic.Int64
}

func (r *result) fail(stage string, err error) {
	kind := stage
	if err != nil {
		msg := err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		kind += ": " + msg
	}
	r.mu.Lock()
	r.errs[kind]++
	r.mu.Unlock()
}

// timing is how long the sessions took to open, and to echo.
type timing struct{ setup, transfer time.Duration }

func drive(n, relays int, mode string, size, parallel int) (timing, error) {
	resp, err := start("responder", "-role", "responder")
	if err != nil {
		return timing{}, err
	}
	defer resp.stop()
	procs := []*proc{}
	addrs := []string{}
	for i := range relays {
		args := []string{"-role", "relay"}
		if mode == "chain" {
			args = append(args, "-first")
		}
		p, err := start(fmt.Sprintf("relay%d", i+1), args...)
		if err != nil {
			return timing{}, err
		}
		defer p.stop()
		procs = append(procs, p)
		addrs = append(addrs, p.addr)
	}
	procs = append(procs, resp)

	var establish func(ctx context.Context) (net.Conn, error)
	switch mode {
	case "direct":
		establish = func(ctx context.Context) (net.Conn, error) { return chainRoute(ctx, []string{resp.addr}, resp.addr) }
	case "chain":
		establish = func(ctx context.Context) (net.Conn, error) { return chainRoute(ctx, addrs, resp.addr) }
	case "random":
		mgrLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return timing{}, err
		}
		defer mgrLn.Close()
		m := &gunshu.Manager{Policy: gunshu.Policy{Allow: []string{"127.0.0.0/8"}}}
		go func() { _ = m.Serve(mgrLn) }()
		for _, a := range addrs {
			if err := gunshu.Register(context.Background(), mgrLn.Addr().String(), a, 5*time.Second); err != nil {
				return timing{}, fmt.Errorf("registering %s: %w", a, err)
			}
		}
		d := &gunshu.Dialer{Manager: mgrLn.Addr().String(), ListTTL: time.Minute}
		establish = func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, resp.addr) }
	default:
		return timing{}, fmt.Errorf("unknown mode %q", mode)
	}

	before := snapshot(procs)
	res := &result{errs: map[string]int{}}
	var (
		established sync.WaitGroup
		finished    sync.WaitGroup
		go_         = make(chan struct{})
		slots       = make(chan struct{}, parallel)
	)
	setupStart := time.Now()
	for i := range n {
		established.Add(1)
		finished.Add(1)
		go func() {
			defer finished.Done()
			slots <- struct{}{}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			conn, err := establish(ctx)
			cancel()
			<-slots
			if err != nil {
				res.fail("establish", err)
				established.Done()
				return
			}
			defer conn.Close()
			res.opened.Add(1)
			established.Done()
			<-go_
			if err := checksummedEcho(conn, uint64(i), size); err != nil {
				res.fail("transfer", err)
				return
			}
			res.ok.Add(1)
		}()
	}
	established.Wait()
	setup := time.Since(setupStart)
	peak := snapshot(procs)
	transferStart := time.Now()
	close(go_)
	finished.Wait()
	transfer := time.Since(transferStart)
	time.Sleep(2 * time.Second) // let every hop finish closing
	after := snapshot(procs)

	fmt.Printf("mode %s: %d sessions through %d relay processes, %d bytes each way per session\n", mode, n, relays, size)
	fmt.Printf("established %d (all open at once) in %v; %d echoed with matching SHA-256 in %v\n",
		res.opened.Load(), setup.Round(time.Millisecond), res.ok.Load(), transfer.Round(time.Millisecond))
	errs := make([]string, 0, len(res.errs))
	for k, v := range res.errs {
		errs = append(errs, fmt.Sprintf("  %6d  %s", v, k))
	}
	sort.Strings(errs)
	fmt.Printf("errors: %d\n", int64(n)-res.ok.Load())
	for _, e := range errs {
		fmt.Println(e)
	}
	fmt.Println("fds: all descriptors (of which splice pipes, pooled for reuse up to 256 pairs)")
	fmt.Printf("%-10s %28s %34s %10s\n", "process", "goroutines before/peak/after", "fds before/peak/after", "peak RSS")
	for i, p := range procs {
		fmt.Printf("%-10s %28s %34s %7d MiB\n", p.name,
			fmt.Sprintf("%d / %d / %d", before[i].Goroutines, peak[i].Goroutines, after[i].Goroutines),
			fmt.Sprintf("%d(%d) / %d(%d) / %d(%d)", before[i].FDs, before[i].PipeFDs, peak[i].FDs, peak[i].PipeFDs, after[i].FDs, after[i].PipeFDs),
			after[i].PeakRSSKiB/1024)
	}
	t := timing{setup, transfer}
	if res.ok.Load() != int64(n) {
		return t, errors.New("not every session succeeded")
	}
	for i := range procs {
		// Pooled pipes are kept on purpose; any other descriptor left is a leak.
		if after[i].FDs-after[i].PipeFDs > before[i].FDs-before[i].PipeFDs || after[i].Goroutines > before[i].Goroutines+2 {
			return t, fmt.Errorf("%s leaked: fds %d → %d, goroutines %d → %d", procs[i].name,
				before[i].FDs, after[i].FDs, before[i].Goroutines, after[i].Goroutines)
		}
	}
	return t, nil
}

func snapshot(procs []*proc) []stats {
	out := make([]stats, len(procs))
	for i, p := range procs {
		out[i] = p.stats()
	}
	return out
}

// chainRoute sends est to the first relay with the others and the
// responder, in order; relays started with -first follow that order.
func chainRoute(ctx context.Context, relays []string, responder string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", relays[0])
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	msg := fmt.Sprintf("est\n%d\n", len(relays))
	for _, a := range append(relays[1:], responder) {
		msg += a + "\n"
	}
	if _, err := io.WriteString(c, msg); err != nil {
		c.Close()
		return nil, err
	}
	reply := make([]byte, 3)
	if _, err := io.ReadFull(c, reply); err != nil || string(reply) != "ok\n" {
		c.Close()
		if err != nil {
			return nil, fmt.Errorf("waiting for ok: %w", err)
		}
		return nil, fmt.Errorf("est answered %q", reply)
	}
	if _, err := io.WriteString(c, "forward\n"); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// checksummedEcho sends size pseudo-random bytes (seeded by id), half-
// closes, and checks that the echo has the same length and SHA-256.
func checksummedEcho(conn net.Conn, id uint64, size int) error {
	_ = conn.SetDeadline(time.Now().Add(120 * time.Second))
	data := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{byte(id), byte(id >> 8), byte(id >> 16), byte(id >> 24)})
	_, _ = rng.Read(data)
	want := sha256.Sum256(data)
	werr := make(chan error, 1)
	go func() {
		_, err := conn.Write(data)
		if err == nil {
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				err = cw.CloseWrite()
			}
		}
		werr <- err
	}()
	h := sha256.New()
	got, err := io.Copy(h, conn)
	if err != nil {
		return fmt.Errorf("reading echo: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("sending: %w", err)
	}
	if got != int64(size) || !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("echo of %d bytes does not match (%d bytes)", size, got)
	}
	return nil
}
