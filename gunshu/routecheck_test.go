package gunshu

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingListener counts the connections it accepted.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

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
	ln := &countingListener{Listener: listen(t)}
	addr := ln.Addr().String()
	port := addr[strings.LastIndex(addr, ":")+1:]
	// No Self: the relay learns its port and address from the connections
	// it accepts.
	r := &Relay{Policy: Policy{Allow: []string{"127.0.0.0/8", "::/0", "0.0.0.0/8"}, Resolver: dns.resolver()}}
	serveRelayOn(t, r, ln)
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
		if err := r.checkList([]string{s}, ln.Addr()); !errors.Is(err, ErrSelf) {
			t.Errorf("checkList(%s) = %v, want ErrSelf", s, err)
		}
		before := ln.accepted.Load()
		got := exchange(t, addr, fmt.Sprintf("est\n1\n%s\n", s))
		if got != "fail\n" {
			t.Errorf("est naming the relay as %s: answered %q, want fail", s, got)
		}
		if n := ln.accepted.Load() - before; n != 1 {
			t.Errorf("est naming the relay as %s: the relay accepted %d connections, want 1 (no dial to itself)", s, n)
		}
	}
	// The relay named beside another hop: refused before the relay dials
	// anything, whichever entry it would have picked (24 tries: without
	// the check, the other hop is picked at least once but with
	// probability 2^-24).
	other := &countingListener{Listener: listen(t)}
	defer other.Close()
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for range 24 {
		if got := exchange(t, addr, fmt.Sprintf("est\n2\n%s\nme.example:%s\n", other.Addr(), port)); got != "fail\n" {
			t.Fatalf("a list naming the relay beside another hop: %q, want fail", got)
		}
	}
	if n := other.accepted.Load(); n != 0 {
		t.Errorf("the relay dialed the other hop %d times, want 0", n)
	}
	// Not spellings of it: another port, another address, a name
	// resolving elsewhere. These reach the dial (and fail there: nothing
	// listens), which is what the session's outcome says.
	for _, s := range []string{"127.0.0.1:1", "127.0.0.9:" + port, "other.example:" + port} {
		if err := r.checkList([]string{s}, ln.Addr()); err != nil {
			t.Errorf("checkList(%s) = %v, want nil", s, err)
		}
	}
}

// TestRelayHopBound: a list longer than the relay's bound (20 by
// default, as many as an entrance ever offers) is refused before any dial.
func TestRelayHopBound(t *testing.T) {
	r := &Relay{}
	list := make([]string, DefaultMaxHops+1)
	for i := range list {
		list[i] = fmt.Sprintf("198.51.100.%d:7001", i+1)
	}
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7001}
	if err := r.checkList(list[:DefaultMaxHops], local); err != nil {
		t.Fatalf("a list of %d: %v", DefaultMaxHops, err)
	}
	if err := r.checkList(list, local); err == nil || !strings.Contains(err.Error(), "more than the 20 hops") {
		t.Fatalf("a list of %d: %v, want the hop bound", len(list), err)
	}
	wide := &Relay{Limits: Limits{MaxList: 64}}
	if err := wide.checkList(list, local); err != nil {
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
	ln := &countingListener{Listener: listen(t)}
	addr := ln.Addr().String()
	port := addr[strings.LastIndex(addr, ":")+1:]
	r := &Relay{Policy: Policy{Allow: []string{"127.0.0.0/8"}, Resolver: dns.resolver()}, Timeouts: Timeouts{Dial: time.Second}}
	serveRelayOn(t, r, ln)
	if got := exchange(t, addr, "est\n1\nflip.example:"+port+"\n"); got != "fail\n" {
		t.Fatalf("answered %q, want fail", got)
	}
	if n := ln.accepted.Load(); n != 1 {
		t.Fatalf("the relay accepted %d connections, want 1", n)
	}
}
