package gunshu_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// Outages of whole processes: a relay killed by the kernel, a manager
// restarted, a next hop that hangs. (fault_test.go covers relays ending
// in-process.)

// streamingResponder accepts routes and, on each, writes and reads
// without pause; ended receives once per stream when it broke.
type streamingResponder struct {
	addr  string
	ended chan time.Time
}

func newStreamingResponder(t testing.TB) *streamingResponder {
	t.Helper()
	ln := testkit.Listen(t)
	rl := (&gunshu.Responder{}).Listen(ln, 0)
	sr := &streamingResponder{addr: ln.Addr().String(), ended: make(chan time.Time, 16)}
	t.Cleanup(rl.Wait)
	testkit.Serve(t, rl, func(c net.Conn) {
		defer c.Close()
		go func() { _, _ = c.Write(make([]byte, 64<<10)); pump(c) }()
		_, _ = io.Copy(io.Discard, c)
		sr.ended <- time.Now()
	})
	return sr
}

// pump writes to w until it fails.
func pump(w io.Writer) {
	buf := make([]byte, 16<<10)
	for {
		if _, err := w.Write(buf); err != nil {
			return
		}
	}
}

// streamRoute opens a route through the chain of relays to responder,
// starts data flowing both ways and returns once the responder's first
// bytes came back through it. broken receives when the client's side of
// the route ended.
func streamRoute(t testing.TB, chain []string, responder string) (broken chan time.Time) {
	t.Helper()
	c := dialT(t, chain[0])
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, estRequest(chain, responder)); err != nil {
		t.Fatal(err)
	}
	if got := readReply(t, c); got != "ok\n" {
		t.Fatalf("est = %q", got)
	}
	if _, err := io.WriteString(c, "forward\n"); err != nil {
		t.Fatal(err)
	}
	broken = make(chan time.Time, 1)
	go pump(c)
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("no byte came back through the route: %v", err)
	}
	go func() {
		_, _ = io.Copy(io.Discard, c)
		broken <- time.Now()
	}()
	return broken
}

func within(t testing.TB, what string, ch chan time.Time, since time.Time, limit time.Duration) {
	t.Helper()
	select {
	case at := <-ch:
		d := at.Sub(since)
		if d > limit {
			t.Errorf("%s ended %v after the kill, limit %v", what, d, limit)
		}
		t.Logf("%s ended %v after the kill", what, d)
	case <-time.After(limit + 2*time.Second):
		t.Errorf("%s still open %v after the kill", what, limit+2*time.Second)
	}
}

// TestHelperRelayProcess is not a test: TestRelayProcessKilledMidStream
// runs the test binary with it as a relay process.
func TestHelperRelayProcess(t *testing.T) {
	if os.Getenv("GUNSHU_HELPER_RELAY") != "1" {
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(2)
	}
	os.Stdout.WriteString(ln.Addr().String() + "\n")
	r := &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Rand: pickFirst}
	_ = r.Serve(ln)
	os.Exit(0)
}

// TestRelayProcessKilledMidStream is the same with r2 a real process
// killed with SIGKILL: the kernel, not the relay, closes its sockets.
func TestRelayProcessKilledMidStream(t *testing.T) {
	relay := testkit.StartChild(t, "^TestHelperRelayProcess$", "GUNSHU_HELPER_RELAY=1")
	middle := relay.First
	r1 := &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Rand: pickFirst}
	r3 := &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Rand: pickFirst}
	a1, a3 := testnet.ServeRelay(t, r1), testnet.ServeRelay(t, r3)
	resp := newStreamingResponder(t)
	broken := streamRoute(t, []string{a1, middle, a3}, resp.addr)
	testkit.Eventually(t, 2*time.Second, "the route through the process", func() bool { return r1.Active() == 1 && r3.Active() == 1 })
	killed := time.Now()
	if err := relay.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	within(t, "the client's connection", broken, killed, time.Second)
	within(t, "the responder's stream", resp.ended, killed, time.Second)
	deadline := killed.Add(time.Second)
	for (r1.Active() != 0 || r3.Active() != 0) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if r1.Active() != 0 || r3.Active() != 0 {
		t.Errorf("1 s after the kill: r1 holds %d, r3 holds %d sessions", r1.Active(), r3.Active())
	}
}

// TestRelaysReregisterAfterManagerRestart: a manager restarted empty on
// the same address lists the relay again within one registration
// interval, whether it came back between two registrations or after
// being down long enough for them to fail.
func TestRelaysReregisterAfterManagerRestart(t *testing.T) {
	const interval = time.Second
	relay := testnet.ServeRelay(t, &gunshu.Relay{})
	ln := testkit.Listen(t)
	mgrAddr := ln.Addr().String()
	startManager := func(ln net.Listener) (*gunshu.Manager, func()) {
		m := &gunshu.Manager{Registry: &gunshu.MemoryRegistry{}, Policy: testnet.LoopbackPolicy(), TestTimeout: time.Second}
		done := make(chan struct{})
		go func() { defer close(done); _ = m.Serve(ln) }()
		return m, func() { ln.Close(); <-done }
	}
	relisten := func() net.Listener {
		for range 100 {
			if ln, err := net.Listen("tcp", mgrAddr); err == nil {
				return ln
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("cannot listen on %s again", mgrAddr)
		return nil
	}
	listed := func(m *gunshu.Manager) bool {
		addrs, _ := m.Registry.Addrs(context.Background())
		return len(addrs) == 1 && addrs[0] == relay
	}
	m, stop := startManager(ln)
	reg := &gunshu.Registrar{Managers: []string{mgrAddr}, Advertise: relay, Interval: interval, MinBackoff: 100 * time.Millisecond, Timeout: 2 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); reg.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testkit.Eventually(t, 2*time.Second, "the first registration", func() bool { return listed(m) })

	// Bound: the interval, its jitter (10 %) and a verification.
	limit := interval + interval/10 + 500*time.Millisecond
	for _, down := range []time.Duration{0, 2 * interval} {
		stop()
		time.Sleep(down)
		m, stop = startManager(relisten())
		restarted := time.Now()
		for !listed(m) && time.Since(restarted) < limit+2*time.Second {
			time.Sleep(10 * time.Millisecond)
		}
		if d := time.Since(restarted); !listed(m) || d > limit {
			t.Errorf("down %v: relay listed again after %v, limit %v", down, d, limit)
		}
	}
	stop()
}

// TestSilentNextHopFailsWithinRouteTimeout: a next hop that accepts and
// never answers costs a relay (and an initiator) no more than the route
// timeout, and the relay then says fail.
func TestSilentNextHopFailsWithinRouteTimeout(t *testing.T) {
	const route = 700 * time.Millisecond
	silent := cannedServer(t, "", true)
	relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Timeouts: gunshu.Timeouts{Route: route}})
	start := time.Now()
	if got := exchange(t, relay, "est\n1\n"+silent+"\n"); got != "fail\n" {
		t.Fatalf("relay reply %q, want fail", got)
	}
	if d := time.Since(start); d < route*8/10 || d > route+time.Second {
		t.Fatalf("relay answered fail after %v, route timeout %v", d, route)
	}

	mgr := cannedServer(t, "1\n"+silent+"\n", false)
	d := &gunshu.Dialer{Manager: mgr, Attempts: 1, Timeouts: gunshu.Timeouts{Route: route}}
	start = time.Now()
	_, err := d.Establish(context.Background(), "192.0.2.1:80")
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("initiator: %v, want a timeout", err)
	}
	if d := time.Since(start); d > route+time.Second {
		t.Fatalf("initiator gave up after %v, route timeout %v", d, route)
	}
}
