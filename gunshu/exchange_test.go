package gunshu_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// The tests in this file play each exchange of PROTOCOL.md over raw TCP
// and compare every byte that crosses the wire.

func TestExchangeRegOK(t *testing.T) {
	m := &gunshu.Manager{Policy: testnet.LoopbackPolicy(), TestTimeout: time.Second}
	mgr := testnet.ServeManager(t, m)
	relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy()})

	if got := exchange(t, mgr, "reg\n"+relay+"\n"); got != "ok\n" {
		t.Fatalf("reg: got %q, want %q", got, "ok\n")
	}
	// Blanks and a CR around the address are layout, and registering
	// again refreshes the entry instead of adding a second one.
	if got := exchange(t, mgr, "reg\r\n \t"+relay+"\r\n"); got != "ok\n" {
		t.Fatalf("reg again: got %q, want %q", got, "ok\n")
	}
	if got, want := exchange(t, mgr, "list\n"), "1\n"+relay+"\n"; got != want {
		t.Fatalf("list: got %q, want %q", got, want)
	}
}

func TestExchangeRegFail(t *testing.T) {
	dead := testkit.Listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()
	silent := newFakeHop(t) // accepts, never answers test

	relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy()})
	other := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy()})

	cases := []struct {
		name, addr string
		registry   *gunshu.MemoryRegistry
	}{
		{name: "malformed", addr: "not-an-address"},
		{name: "port zero", addr: "127.0.0.1:0"},
		{name: "IPv6 without brackets", addr: "::1:7001"},
		{name: "empty", addr: ""},
		{name: "denied by policy", addr: "10.1.2.3:7001"},
		{name: "denied port", addr: "127.0.0.1:25"},
		{name: "does not answer test", addr: deadAddr},
		{name: "never answers test", addr: silent.addr},
		{name: "list full", addr: other, registry: gunshu.NewMemoryRegistry(1, 0)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &gunshu.Manager{Policy: testnet.LoopbackPolicy(), TestTimeout: 300 * time.Millisecond}
			if tc.registry != nil {
				m.Registry = tc.registry
			}
			mgr := testnet.ServeManager(t, m)
			if tc.registry != nil {
				if got := exchange(t, mgr, "reg\n"+relay+"\n"); got != "ok\n" {
					t.Fatalf("filling the list: got %q", got)
				}
			}
			if got := exchange(t, mgr, "reg\n"+tc.addr+"\n"); got != "fail\n" {
				t.Fatalf("reg %q: got %q, want %q", tc.addr, got, "fail\n")
			}
			want := "0\n"
			if tc.registry != nil {
				want = "1\n" + relay + "\n"
			}
			if got := exchange(t, mgr, "list\n"); got != want {
				t.Fatalf("list after refused reg: got %q, want %q", got, want)
			}
		})
	}
}

func TestExchangeTest(t *testing.T) {
	relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy()})
	if got := exchange(t, relay, "test\n"); got != "ok\n" {
		t.Fatalf("relay: got %q, want %q", got, "ok\n")
	}
	accepted := make(chan net.Conn, 1)
	resp, _ := serveResponder(t, &gunshu.Responder{}, func(c net.Conn) { accepted <- c })
	if got := exchange(t, resp, "test\n"); got != "ok\n" {
		t.Fatalf("responder: got %q, want %q", got, "ok\n")
	}
	select {
	case c := <-accepted:
		c.Close()
		t.Fatal("a test exchange reached the responder's Accept")
	case <-time.After(50 * time.Millisecond):
	}
}

func TestExchangeList(t *testing.T) {
	m := &gunshu.Manager{Policy: testnet.LoopbackPolicy(), DisableVerify: true}
	mgr := testnet.ServeManager(t, m)
	if got := exchange(t, mgr, "list\n"); got != "0\n" {
		t.Fatalf("empty list: got %q, want %q", got, "0\n")
	}
	var want []string
	for i := range 6 {
		addr := "127.0.0." + strconv.Itoa(i+1) + ":7001"
		if err := m.Register(context.Background(), addr); err != nil {
			t.Fatal(err)
		}
		want = append(want, addr)
	}
	want = append(want, "relay.example.net:7001")
	// A name, stored directly: the list carries names as registered.
	if err := m.Registry.Register(context.Background(), "relay.example.net:7001", "", time.Now()); err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)

	orders := map[string]bool{}
	for range 30 {
		got := exchange(t, mgr, "list\n")
		if !strings.HasSuffix(got, "\n") {
			t.Fatalf("list reply %q does not end in a newline", got)
		}
		lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
		if lines[0] != strconv.Itoa(len(want)) {
			t.Fatalf("count line %q, want %d", lines[0], len(want))
		}
		entries := lines[1:]
		sorted := slices.Sorted(slices.Values(entries))
		if !slices.Equal(sorted, want) {
			t.Fatalf("entries %q, want %q in any order", entries, want)
		}
		orders[strings.Join(entries, ",")] = true
	}
	// 30 lists of 7 entries all in one order would happen by chance with
	// probability (1/5040)^29.
	if len(orders) < 2 {
		t.Fatalf("30 lists came in %d order(s): the manager does not shuffle", len(orders))
	}
}

func TestExchangeEstAtRelay(t *testing.T) {
	next := newFakeHop(t)
	relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy()})

	up := dialRaw(t, relay)
	writeRaw(t, up, "est\n1\n"+next.addr+"\n")
	down := next.answerOK(t, up)

	writeRaw(t, up, "forward\nhello")
	expectRead(t, down, "forward\nhello")
	writeRaw(t, down, "world")
	expectRead(t, up, "world")

	// Half-closes pass through in both directions, one at a time.
	_ = down.CloseWrite()
	expectClosed(t, up, ioWait)
	writeRaw(t, up, "still up")
	expectRead(t, down, "still up")
	_ = up.CloseWrite()
	expectClosed(t, down, ioWait)
}

// TestExchangeEstPassesRest checks the list a relay passes on: the chosen
// entry is removed, the others follow in order and in canonical form.
func TestExchangeEstPassesRest(t *testing.T) {
	a, b, c := newFakeHop(t), newFakeHop(t), newFakeHop(t)
	for _, tc := range []struct {
		name   string
		pick   constSource
		chosen *fakeHop
		rest   string
	}{
		{"first", pickFirst, a, "2\n" + b.addr + "\n" + c.addr + "\n"},
		{"last", pickLast, c, "2\n" + a.addr + "\n" + b.addr + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Rand: tc.pick})
			up := dialRaw(t, relay)
			// Entries arrive with blanks and CRs; they leave canonical.
			writeRaw(t, up, "est\r\n 3\r\n"+a.addr+"\r\n\t"+b.addr+" \n"+c.addr+"\n")
			down := tc.chosen.accept(t)
			expectRead(t, down, "est\n"+tc.rest)
			writeRaw(t, down, "ok\n")
			expectRead(t, up, "ok\n")
			writeRaw(t, up, "forward\n")
			expectRead(t, down, "forward\n")
		})
	}
}

func TestExchangeEstRelayFails(t *testing.T) {
	dead := testkit.Listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()

	t.Run("next hop answers fail", func(t *testing.T) {
		next := newFakeHop(t)
		relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy()})
		up := dialRaw(t, relay)
		writeRaw(t, up, "est\n1\n"+next.addr+"\n")
		down := next.accept(t)
		expectRead(t, down, "est\n0\n")
		writeRaw(t, down, "fail\n")
		if got := readToEnd(t, up); got != "fail\n" {
			t.Fatalf("got %q, want %q", got, "fail\n")
		}
		expectClosed(t, down, ioWait)
	})
	t.Run("next hop closes", func(t *testing.T) {
		next := newFakeHop(t)
		relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy()})
		up := dialRaw(t, relay)
		writeRaw(t, up, "est\n1\n"+next.addr+"\n")
		down := next.accept(t)
		expectRead(t, down, "est\n0\n")
		down.Close()
		if got := readToEnd(t, up); got != "fail\n" {
			t.Fatalf("got %q, want %q", got, "fail\n")
		}
	})
	t.Run("next hop unreachable", func(t *testing.T) {
		relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy()})
		if got := exchange(t, relay, "est\n1\n"+deadAddr+"\n"); got != "fail\n" {
			t.Fatalf("got %q, want %q", got, "fail\n")
		}
	})
	t.Run("next hop denied by policy", func(t *testing.T) {
		relay := testnet.ServeRelay(t, &gunshu.Relay{}) // default policy: no loopback
		next := newFakeHop(t)
		if got := exchange(t, relay, "est\n1\n"+next.addr+"\n"); got != "fail\n" {
			t.Fatalf("got %q, want %q", got, "fail\n")
		}
	})
	t.Run("next hop silent", func(t *testing.T) {
		next := newFakeHop(t)
		relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Timeouts: gunshu.Timeouts{Route: 300 * time.Millisecond}})
		up := dialRaw(t, relay)
		writeRaw(t, up, "est\n1\n"+next.addr+"\n")
		down := next.accept(t)
		expectRead(t, down, "est\n0\n")
		if got := readToEnd(t, up); got != "fail\n" {
			t.Fatalf("got %q, want %q", got, "fail\n")
		}
		expectClosed(t, down, ioWait)
	})
}

func TestExchangeEstAtResponder(t *testing.T) {
	accepted := make(chan net.Conn, 1)
	resp, _ := serveResponder(t, &gunshu.Responder{}, func(c net.Conn) { accepted <- c })

	up := dialRaw(t, resp)
	// The list is read whole and ignored: any well-formed entries do.
	writeRaw(t, up, "est\n3\n192.0.2.1:7001\n[2001:db8::1]:443\nrelay.example.net:7001\n")
	expectRead(t, up, "ok\n")
	writeRaw(t, up, "forward\nping")
	var st net.Conn
	select {
	case st = <-accepted:
	case <-time.After(ioWait):
		t.Fatal("the stream was not accepted")
	}
	defer st.Close()
	expectRead(t, st, "ping")
	writeRaw(t, st, "pong")
	expectRead(t, up, "pong")
	_ = up.CloseWrite()
	expectClosed(t, st, ioWait)
}

func TestExchangeEstAtResponderEmptyList(t *testing.T) {
	accepted := make(chan net.Conn, 1)
	resp, _ := serveResponder(t, &gunshu.Responder{}, func(c net.Conn) { accepted <- c })
	up := dialRaw(t, resp)
	writeRaw(t, up, "est\n0\nforward\n")
	expectRead(t, up, "ok\n")
	select {
	case st := <-accepted:
		st.Close()
	case <-time.After(ioWait):
		t.Fatal("the stream was not accepted")
	}
}

// TestExchangeForwardThroughTwoRelays follows forward and the first bytes
// through a chain relay → relay → fake responder, with the whole
// handshake sent in one write before any reply, as a pipelining peer may.
func TestExchangeForwardThroughTwoRelays(t *testing.T) {
	end := newFakeHop(t)
	second := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Rand: pickFirst})
	first := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Rand: pickFirst})

	up := dialRaw(t, first)
	writeRaw(t, up, fmt.Sprintf("est\n2\n%s\n%s\n", second, end.addr))
	down := end.accept(t)
	expectRead(t, down, "est\n0\n")
	writeRaw(t, down, "ok\nearly") // bytes right behind ok belong to the stream
	expectRead(t, up, "ok\n")
	writeRaw(t, up, "forward\nGET / HTTP/1.0\r\n\r\n")
	expectRead(t, down, "forward\nGET / HTTP/1.0\r\n\r\n")
	expectRead(t, up, "early")
}
