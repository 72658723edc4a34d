package gunshu_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/gunshu/forward"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// chain starts n relays that always extend a route to the first entry of
// their list, so a test knows the exact path: relays[0] → … → relays[n-1].
func chain(t *testing.T, n int) ([]*gunshu.Relay, []string) {
	relays := make([]*gunshu.Relay, n)
	addrs := make([]string, n)
	for i := range relays {
		relays[i] = &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Rand: pickFirst}
		addrs[i] = testnet.ServeRelay(t, relays[i])
	}
	return relays, addrs
}

// estRequest is the est an initiator sends to addrs[0] for the path
// addrs[1:] then end.
func estRequest(addrs []string, end string) string {
	list := append(slices.Clone(addrs[1:]), end)
	return "est\n" + fmt.Sprint(len(list)) + "\n" + strings.Join(list, "\n") + "\n"
}

func activeSessions(relays []*gunshu.Relay) int {
	n := 0
	for _, r := range relays {
		n += r.Active()
	}
	return n
}

// TestFaultDeadEntry: the responder at the end of the list is gone. The
// last relay cannot reach it and answers fail; fail travels back to the
// initiator and every hop closes.
func TestFaultDeadEntry(t *testing.T) {
	dead := testkit.Listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()
	relays, addrs := chain(t, 3)

	up := dialRaw(t, addrs[0])
	writeRaw(t, up, estRequest(addrs, deadAddr))
	if got := readToEnd(t, up); got != "fail\n" {
		t.Fatalf("initiator got %q, want %q", got, "fail\n")
	}
	testkit.Eventually(t, time.Second, "relays still hold sessions", func() bool { return activeSessions(relays) == 0 })
}

// TestFaultDeadEntryDialer: with random relays (the Dialer and
// every relay draw their own choices), a dead relay somewhere in the list
// never yields a half-built route: an attempt fails cleanly and the
// Dialer's next attempt, with a fresh list, may succeed.
func TestFaultDeadEntryDialer(t *testing.T) {
	n := testnet.New(t, 3)
	echo := testnet.EchoResponder(t)
	// A relay registers, then dies: it stays listed until patrol.
	gone := n.AddRelay(t)
	gone.Listener.Close()
	_ = gone.Relay.Close()

	d := n.Dialer(7)
	d.MaxRelays = -1
	d.Attempts = 1
	failures := 0
	for range 40 {
		conn, err := d.DialContext(context.Background(), echo)
		if err != nil {
			failures++
			continue
		}
		writeRaw(t, conn, "ping")
		expectRead(t, conn, "ping")
		conn.Close()
	}
	if failures == 0 {
		t.Fatal("no route through the dead relay failed: is it in the list at all?")
	}
	testkit.Eventually(t, time.Second, "relays still hold sessions", func() bool {
		total := 0
		for _, r := range n.Relays {
			total += r.Relay.Active()
		}
		return total == 0
	})
}

// TestFaultNextHopDiesMidStream: when a relay's next hop dies while
// bytes flow, every hop before it closes within a second.
func TestFaultNextHopDiesMidStream(t *testing.T) {
	relays, addrs := chain(t, 3)
	end := newFakeHop(t)

	up := dialRaw(t, addrs[0])
	writeRaw(t, up, estRequest(addrs, end.addr))
	down := end.answerOK(t, up)
	writeRaw(t, up, "forward\nrequest")
	expectRead(t, down, "forward\nrequest")
	writeRaw(t, down, "partial response")
	expectRead(t, up, "partial response")

	t.Run("last relay", func(t *testing.T) {
		forward.Abort(down) // the responder's process dies
		start := time.Now()
		got, err := readUntilClosed(up, time.Second)
		if err == nil {
			t.Fatalf("the initiator saw an orderly end (read %q): a broken route must not look finished", got)
		}
		if !isReset(err) {
			t.Fatalf("the initiator was not cut off within 1s (read %q): %v", got, err)
		}
		t.Logf("initiator cut off after %v", time.Since(start))
		testkit.Eventually(t, time.Second, "relays still hold sessions", func() bool { return activeSessions(relays) == 0 })
	})
}

// TestFaultMiddleRelayAborts: the middle relay of three goes down; both
// ends of the route learn it within a second.
func TestFaultMiddleRelayAborts(t *testing.T) {
	relays, addrs := chain(t, 3)
	end := newFakeHop(t)
	up := dialRaw(t, addrs[0])
	writeRaw(t, up, estRequest(addrs, end.addr)+"forward\n")
	down := end.answerOK(t, up)
	expectRead(t, down, "forward\n")

	_ = relays[1].Close()
	for name, c := range map[string]net.Conn{"initiator": up, "responder": down} {
		if _, err := readUntilClosed(c, time.Second); err == nil || !isReset(err) {
			t.Errorf("%s: want a reset within 1s, got %v", name, err)
		}
	}
	testkit.Eventually(t, time.Second, "relays still hold sessions", func() bool { return activeSessions(relays) == 0 })
}

// TestFaultHalfClose: a client that shuts its write side after the
// request still gets the whole response; the server here answers only
// after it has seen the end of the request.
func TestFaultHalfClose(t *testing.T) {
	n := testnet.New(t, 5)
	resp, _ := serveResponder(t, &gunshu.Responder{}, func(c net.Conn) {
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(ioWait))
			req, err := io.ReadAll(c)
			if err != nil {
				return
			}
			fmt.Fprintf(c, "got %d bytes: %s", len(req), strings.ToUpper(string(req)))
		}()
	})
	d := n.Dialer(3)
	for i := range 20 {
		conn, err := d.DialContext(context.Background(), resp)
		if err != nil {
			t.Fatal(err)
		}
		req := fmt.Sprintf("request %d", i)
		writeRaw(t, conn, req)
		if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if got, want := readToEnd(t, conn), fmt.Sprintf("got %d bytes: %s", len(req), strings.ToUpper(req)); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
		conn.Close()
	}
}

// TestFaultPatrolDropsSilentService: patrol removes a service that stops
// answering test, whether it hangs or is gone, and keeps the others.
func TestFaultPatrolDropsSilentService(t *testing.T) {
	n := testnet.New(t, 2)
	n.Manager.TestTimeout = 300 * time.Millisecond

	// hanging answers the verifying test, then accepts and says nothing.
	hanging := newFakeHop(t)
	regDone := make(chan error, 1)
	go func() { regDone <- gunshu.Register(context.Background(), n.ManagerAddr, hanging.addr, ioWait) }()
	c := hanging.accept(t)
	expectRead(t, c, "test\n")
	writeRaw(t, c, "ok\n")
	if err := <-regDone; err != nil {
		t.Fatal(err)
	}
	gone := n.AddRelay(t)

	listed := func() []string {
		addrs, err := n.Manager.Registry.Addrs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(addrs)
		return addrs
	}
	want := []string{n.Relays[0].Addr, n.Relays[1].Addr}
	slices.Sort(want)
	if got := listed(); len(got) != 4 {
		t.Fatalf("before patrol: %q", got)
	}

	gone.Listener.Close()
	_ = gone.Relay.Close()
	ctx, cancel := context.WithCancel(context.Background())
	n.Manager.PatrolInterval = 50 * time.Millisecond
	patrolDone := make(chan struct{})
	go func() {
		defer close(patrolDone)
		n.Manager.Patrol(ctx)
	}()
	defer func() { cancel(); <-patrolDone }()
	// Accept and ignore the hanging service's tests.
	go func() {
		for {
			c, err := hanging.ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	testkit.Eventually(t, 3*time.Second, "patrol kept a silent service", func() bool { return slices.Equal(listed(), want) })
	services, _ := n.Manager.Registry.Services(context.Background())
	for _, s := range services {
		if !s.LastTestOK || s.LastTest.IsZero() {
			t.Errorf("live service %s: last test %v ok=%v", s.Addr, s.LastTest, s.LastTestOK)
		}
	}
}

// TestFaultPatrolTolerance: with MaxFailures 3 a service survives two
// failed rounds and goes on the third.
func TestFaultPatrolTolerance(t *testing.T) {
	n := testnet.New(t, 1)
	n.Manager.MaxFailures = 3
	n.Manager.TestTimeout = 300 * time.Millisecond
	r := n.Relays[0]
	r.Listener.Close()
	for round := 1; round <= 3; round++ {
		n.Manager.PatrolOnce(context.Background())
		addrs, _ := n.Manager.Registry.Addrs(context.Background())
		if still := len(addrs) == 1; still != (round < 3) {
			t.Fatalf("after round %d listed=%v", round, still)
		}
	}
}
