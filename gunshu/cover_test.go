package gunshu_test

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
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
func addRelayOn(t *testing.T, n *testnet.Network, ip string) (string, *acceptLog) {
	t.Helper()
	logged := &acceptLog{Listener: testkit.ListenOn(t, ip+":0")}
	r := n.AddRelayOn(t, logged, func(r *gunshu.Relay) {
		r.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	})
	return r.Addr, logged
}

// With cover, every hop of a route is reached from the address of a
// registered relay, and the initiator's own relay is never on a route.
// Without it, a first hop sees an address that is on no list.
func TestCoverHidesInitiator(t *testing.T) {
	n := testnet.New(t, 0)
	responder := testnet.EchoResponder(t)
	relayHosts := map[string]bool{}
	var logs []*acceptLog
	for _, ip := range []string{"127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"} {
		_, l := addRelayOn(t, n, ip)
		logs = append(logs, l)
		relayHosts[ip] = true
	}
	coverAddr, coverLog := addRelayOn(t, n, "127.0.0.19")
	relayHosts["127.0.0.19"] = true
	for _, l := range append(logs, coverLog) {
		l.take() // the manager's registration tests
	}
	route := func(d *gunshu.Dialer) {
		t.Helper()
		conn, err := d.DialContext(context.Background(), responder)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}

	covered := n.Dialer(11)
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

	bare := n.Dialer(12)
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
