package gunshu

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// acceptLog records the peer host of every connection a listener accepts.
type acceptLog struct {
	net.Listener
	mu    sync.Mutex
	hosts []string
}

func (l *acceptLog) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		l.mu.Lock()
		l.hosts = append(l.hosts, host)
		l.mu.Unlock()
	}
	return c, err
}

func (l *acceptLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.hosts
	l.hosts = nil
	return h
}

// addRelayOn starts a relay that listens on and dials from ip, registers
// it and returns its address and accept log.
func (n *testNet) addRelayOn(t *testing.T, ip string) (string, *acceptLog) {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	logged := &acceptLog{Listener: ln}
	addr := ln.Addr().String()
	r := &Relay{
		Policy: loopbackPolicy(),
		Self:   []string{addr},
		Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}},
	}
	n.serve(ln, func() { _ = r.Serve(logged) })
	n.closers = append(n.closers, func() { _ = r.Close() })
	if err := Register(context.Background(), n.mgrAddr, addr, 5*time.Second); err != nil {
		t.Fatalf("registering relay %s: %v", addr, err)
	}
	return addr, logged
}

// With cover, every hop of a route is reached from the address of a
// registered relay, and the initiator's own relay is never on a route.
// Without it, a first hop sees an address that is on no list.
func TestCoverHidesInitiator(t *testing.T) {
	n := newTestNet(t, 0)
	responder := n.echoResponder(t)
	relayHosts := map[string]bool{}
	var logs []*acceptLog
	for _, ip := range []string{"127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"} {
		_, l := n.addRelayOn(t, ip)
		logs = append(logs, l)
		relayHosts[ip] = true
	}
	coverAddr, coverLog := n.addRelayOn(t, "127.0.0.19")
	relayHosts["127.0.0.19"] = true
	for _, l := range append(logs, coverLog) {
		l.take() // the manager's registration tests
	}
	route := func(d *Dialer) {
		t.Helper()
		conn, err := d.DialContext(context.Background(), responder)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}

	covered := n.dialer(11)
	covered.Cover = coverAddr
	for range 20 {
		route(covered)
	}
	if got := coverLog.take(); len(got) != 0 {
		t.Errorf("the initiator's own relay was on %d routes", len(got))
	}
	seen := 0
	for _, l := range logs {
		for _, host := range l.take() {
			seen++
			if !relayHosts[host] {
				t.Errorf("a hop was reached from %s, which is no registered relay", host)
			}
		}
	}
	if seen < 20 {
		t.Fatalf("only %d hops seen for 20 routes", seen)
	}

	bare := n.dialer(12)
	route(bare)
	unlisted := 0
	for _, l := range append(logs, coverLog) {
		for _, host := range l.take() {
			if !relayHosts[host] {
				unlisted++
			}
		}
	}
	if unlisted != 1 {
		t.Errorf("without cover, %d hops saw an unlisted address; want exactly the first", unlisted)
	}
	if bare.CoverWarning() == "" || covered.CoverWarning() != "" {
		t.Error("CoverWarning must warn exactly the initiator without cover")
	}
}

func TestCoverLocalAddr(t *testing.T) {
	cases := map[string]string{
		"127.0.0.19:7000": "127.0.0.19",
		"192.0.2.77:7000": "", // not an address of this machine: NAT decides
		"relay.test:7000": "", // a name: the module sets LocalAddr
		"0.0.0.0:7000":    "",
		"":                "",
		"no-port-here":    "",
	}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		ln.Close()
		cases["[::1]:7000"] = "::1"
	}
	for addr, want := range cases {
		got := coverLocalAddr(addr)
		switch {
		case want == "" && got != nil:
			t.Errorf("%q: bound to %v, want none", addr, got)
		case want != "" && (got == nil || got.IP.String() != want):
			t.Errorf("%q: bound to %v, want %s", addr, got, want)
		}
	}
}
