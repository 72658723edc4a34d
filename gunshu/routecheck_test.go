package gunshu_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// TestRelayRefusesItsOtherSpellings: a list that names the relay under any
// spelling that reaches it is refused before anything is dialed, so no
// route passes through it twice. Each spelling is the only entry of its
// list, so without the check the relay would dial itself.
func TestRelayRefusesItsOtherSpellings(t *testing.T) {
	dns := newFakeDNS(t, func(name string, ipv6 bool, _ int) []netip.Addr {
		if name == "me.example" && !ipv6 {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		}
		if name == "other.example" && !ipv6 {
			return []netip.Addr{netip.MustParseAddr("127.0.0.9")}
		}
		return nil
	})
	ln := &testkit.CountingListener{Listener: testkit.Listen(t)}
	addr := ln.Addr().String()
	port := addr[strings.LastIndex(addr, ":")+1:]
	// No Self: the relay learns its port and address from the connections
	// it accepts.
	r := &gunshu.Relay{Policy: gunshu.Policy{Allow: []string{"127.0.0.0/8", "::/0", "0.0.0.0/8"}, Resolver: dns.resolver()}}
	testnet.ServeRelayOn(t, r, ln)
	spellings := []string{
		"127.0.0.1:" + port,
		"[::ffff:127.0.0.1]:" + port, // mapped
		"[::ffff:7f00:1]:" + port,
		"[::127.0.0.1]:" + port,     // IPv4-compatible
		"[::ffff:0:7f00:1]:" + port, // SIIT
		"[64:ff9b::7f00:1]:" + port, // NAT64
		"[2002:7f00:1::]:" + port,   // 6to4
		"0.0.0.0:" + port,           // unspecified: the local host
		"[::]:" + port,
		"[::1]:" + port,      // another address of this machine
		"me.example:" + port, // a name resolving to it
		"ME.example.:" + port,
	}
	for _, s := range spellings {
		if err := r.CheckList([]string{s}, fakeConn{local: ln.Addr()}); !errors.Is(err, gunshu.ErrSelf) {
			t.Errorf("checkList(%s) = %v, want gunshu.ErrSelf", s, err)
		}
		before := ln.Accepted.Load()
		got := exchange(t, addr, fmt.Sprintf("est\n1\n%s\n", s))
		if got != "fail\n" {
			t.Errorf("est naming the relay as %s: answered %q, want fail", s, got)
		}
		if n := ln.Accepted.Load() - before; n != 1 {
			t.Errorf("est naming the relay as %s: the relay accepted %d connections, want 1 (no dial to itself)", s, n)
		}
	}
	// The relay named beside another hop: refused before the relay dials
	// anything, whichever entry it would have picked (24 tries: without
	// the check, the other hop is picked at least once but with
	// probability 2^-24).
	other := testkit.CloseEach(t, testkit.Listen(t))
	for range 24 {
		if got := exchange(t, addr, fmt.Sprintf("est\n2\n%s\nme.example:%s\n", other.Addr(), port)); got != "fail\n" {
			t.Fatalf("a list naming the relay beside another hop: %q, want fail", got)
		}
	}
	if n := other.Accepted.Load(); n != 0 {
		t.Errorf("the relay dialed the other hop %d times, want 0", n)
	}
	// Not spellings of it: another port, another address, a name
	// resolving elsewhere. These reach the dial (and fail there: nothing
	// listens), which is what the session's outcome says.
	for _, s := range []string{"127.0.0.1:1", "127.0.0.9:" + port, "other.example:" + port} {
		if err := r.CheckList([]string{s}, fakeConn{local: ln.Addr()}); err != nil {
			t.Errorf("checkList(%s) = %v, want nil", s, err)
		}
	}
}

// TestRelayHopBound: a list longer than the relay's bound (20 by
// default, as many as an entrance ever offers) is refused before any dial.
func TestRelayHopBound(t *testing.T) {
	r := &gunshu.Relay{}
	list := make([]string, gunshu.DefaultMaxHops+1)
	for i := range list {
		list[i] = fmt.Sprintf("198.51.100.%d:7001", i+1)
	}
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7001}
	if err := r.CheckList(list[:gunshu.DefaultMaxHops], fakeConn{local: local}); err != nil {
		t.Fatalf("a list of %d: %v", gunshu.DefaultMaxHops, err)
	}
	if err := r.CheckList(list, fakeConn{local: local}); err == nil || !strings.Contains(err.Error(), "more than the 20 hops") {
		t.Fatalf("a list of %d: %v, want the hop bound", len(list), err)
	}
	wide := &gunshu.Relay{MessageLimits: gunshu.MessageLimits{MaxList: 64}}
	if err := wide.CheckList(list, fakeConn{local: local}); err != nil {
		t.Fatalf("max_list 64, a list of %d: %v", len(list), err)
	}
}

// TestRelayRefusesItselfAtDial: a name that resolved elsewhere when the
// list was checked but to the relay when it is dialed is refused by the
// dial policy.
func TestRelayRefusesItselfAtDial(t *testing.T) {
	dns := newFakeDNS(t, func(name string, ipv6 bool, seen int) []netip.Addr {
		if name == "flip.example" && !ipv6 {
			if seen == 0 {
				return []netip.Addr{netip.MustParseAddr("127.0.0.9")}
			}
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		}
		return nil
	})
	ln := &testkit.CountingListener{Listener: testkit.Listen(t)}
	addr := ln.Addr().String()
	port := addr[strings.LastIndex(addr, ":")+1:]
	r := &gunshu.Relay{Policy: gunshu.Policy{Allow: []string{"127.0.0.0/8"}, Resolver: dns.resolver()}, Timeouts: gunshu.Timeouts{Dial: time.Second}}
	testnet.ServeRelayOn(t, r, ln)
	if got := exchange(t, addr, "est\n1\nflip.example:"+port+"\n"); got != "fail\n" {
		t.Fatalf("answered %q, want fail", got)
	}
	if n := ln.Accepted.Load(); n != 1 {
		t.Fatalf("the relay accepted %d connections, want 1", n)
	}
}

// fakeConn is a connection with given addresses, for checkList.
type fakeConn struct {
	net.Conn
	local, remote net.Addr
}

func (c fakeConn) LocalAddr() net.Addr  { return c.local }
func (c fakeConn) RemoteAddr() net.Addr { return c.remote }

// TestRelayRefusesADialToItself: a relay reachable at addresses it cannot
// know in advance (two loopback listeners on one port stand for a
// wildcard listener) dials itself once under such a spelling, recognises
// its own source address on the connection it accepts, and refuses; it
// then counts every loopback address on its port as its own.
func TestRelayRefusesADialToItself(t *testing.T) {
	lns := testkit.ListenSamePort(t, "127.0.0.1", "127.0.0.2")
	ln1, ln2 := &testkit.CountingListener{Listener: lns[0]}, &testkit.CountingListener{Listener: lns[1]}
	port := portOf(ln1.Addr().String())
	// The relay always picks the first entry, so it dials itself first.
	r := &gunshu.Relay{Policy: gunshu.Policy{Allow: []string{"127.0.0.0/8"}}, Rand: zeroSource{}}
	testnet.ServeRelayOn(t, r, ln1)
	testnet.ServeRelayOn(t, r, ln2)
	next := testkit.CloseEach(t, testkit.ListenOn(t, "127.0.0.9:0"))
	list := fmt.Sprintf("est\n2\n127.0.0.2:%s\n%s\n", port, next.Addr())
	if got := exchange(t, ln1.Addr().String(), list); got != "fail\n" {
		t.Fatalf("a list naming the relay at its second address: %q, want fail", got)
	}
	if a, b, n := ln1.Accepted.Load(), ln2.Accepted.Load(), next.Accepted.Load(); a != 1 || b != 1 || n != 0 {
		t.Fatalf("accepted %d, %d and %d connections, want 1, 1 (the dial to itself, refused) and 0", a, b, n)
	}
	// Reached at two loopback addresses, it owns them all on its port.
	if err := r.CheckList([]string{"127.0.0.3:" + port}, fakeConn{local: ln1.Addr()}); !errors.Is(err, gunshu.ErrSelf) {
		t.Fatalf("checkList(127.0.0.3 on its port) = %v, want gunshu.ErrSelf", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.Active() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := r.Active(); n != 0 {
		t.Fatalf("the relay still holds %d connections", n)
	}
}

func portOf(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

// zeroSource makes every random choice the first.
type zeroSource struct{}

func (zeroSource) Uint64() uint64 { return 0 }
