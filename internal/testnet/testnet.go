// Package testnet is the test fixture of a whole Gunshu network on
// loopback, without Caddy: a manager, relays registered with it, echo
// responders and seeded initiators, each served until the test ends.
// Every package's tests that need package gunshu's roles on sockets use
// it; the helpers that need no Gunshu are in package testkit.
package testnet

import (
	"context"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// LoopbackPolicy lets a relay or manager reach 127.0.0.0/8, which they
// refuse by default.
func LoopbackPolicy() gunshu.Policy { return gunshu.Policy{Allow: testkit.Loopback} }

// ServeRelay serves r on a fresh loopback port until the test ends, and
// returns its address; r.Self defaults to that address.
func ServeRelay(t testing.TB, r *gunshu.Relay) string {
	t.Helper()
	return ServeRelayOn(t, r, testkit.Listen(t))
}

// ServeRelayOn is ServeRelay on ln. When the test ends it closes ln, ends
// r's sessions with a reset and waits for them.
func ServeRelayOn(t testing.TB, r *gunshu.Relay, ln net.Listener) string {
	t.Helper()
	addr := ln.Addr().String()
	if r.Self == nil {
		r.Self = []string{addr}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Serve(ln)
	}()
	t.Cleanup(func() {
		ln.Close()
		_ = r.Close()
		<-done
	})
	return addr
}

// ServeManager serves m on a fresh loopback port until the test ends, and
// returns its address.
func ServeManager(t testing.TB, m *gunshu.Manager) string {
	t.Helper()
	ln := testkit.Listen(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.Serve(ln)
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// EchoResponder starts a responder that echoes every stream back, and
// returns its address. When the test ends it closes the responder and
// every stream.
func EchoResponder(t testing.TB) string {
	t.Helper()
	return AppResponder(t, testkit.Echo)
}

// AppResponder starts a responder whose application is app, run for
// each stream, which is closed when app returns; it returns the
// responder's address. When the test ends it closes the responder and
// every stream.
func AppResponder(t testing.TB, app func(net.Conn)) string {
	t.Helper()
	return ServeResponder(t, &gunshu.Responder{}, app)
}

// ServeResponder is AppResponder with r.
func ServeResponder(t testing.TB, r *gunshu.Responder, app func(net.Conn)) string {
	t.Helper()
	ln := testkit.Listen(t)
	rl := r.Listen(ln, 0)
	t.Cleanup(rl.Wait)
	testkit.Serve(t, rl, func(c net.Conn) {
		defer c.Close()
		app(c)
	})
	return ln.Addr().String()
}

// Network is a manager and relays registered with it, on loopback, until
// the test ends.
type Network struct {
	Manager *gunshu.Manager
	// ManagerAddr is where the manager listens.
	ManagerAddr string
	// Relays are registered with the manager, in the order they were added.
	Relays []*Relay

	configure func(*gunshu.Relay)
	mu        sync.Mutex
}

// Relay is one relay of a Network.
type Relay struct {
	*gunshu.Relay
	// Addr is the relay's listening and registered address.
	Addr string
	// Listener is what the relay serves.
	Listener net.Listener
}

// New starts a manager and relays registered with it.
func New(t testing.TB, relays int) *Network {
	t.Helper()
	return NewWith(t, relays, nil)
}

// NewWith is New with configure applied to every relay before it serves.
func NewWith(t testing.TB, relays int, configure func(*gunshu.Relay)) *Network {
	t.Helper()
	n := &Network{configure: configure}
	n.Manager = &gunshu.Manager{Policy: LoopbackPolicy(), TestTimeout: time.Second}
	n.ManagerAddr = ServeManager(t, n.Manager)
	for range relays {
		n.AddRelay(t)
	}
	return n
}

// AddRelay starts a relay on a fresh loopback port and registers it.
func (n *Network) AddRelay(t testing.TB) *Relay {
	t.Helper()
	return n.AddRelayOn(t, testkit.Listen(t), nil)
}

// AddRelayOn starts a relay serving ln, which must be a listener of its
// advertised address, configured by configure (after the network's own
// configure; either may be nil), and registers it.
func (n *Network) AddRelayOn(t testing.TB, ln net.Listener, configure func(*gunshu.Relay)) *Relay {
	t.Helper()
	r := &Relay{Relay: &gunshu.Relay{Policy: LoopbackPolicy()}, Listener: ln, Addr: ln.Addr().String()}
	r.Self = []string{r.Addr}
	for _, c := range []func(*gunshu.Relay){n.configure, configure} {
		if c != nil {
			c(r.Relay)
		}
	}
	ServeRelayOn(t, r.Relay, ln)
	if err := gunshu.Register(context.Background(), n.ManagerAddr, r.Addr, 5*time.Second); err != nil {
		t.Fatalf("registering relay %s: %v", r.Addr, err)
	}
	n.mu.Lock()
	n.Relays = append(n.Relays, r)
	n.mu.Unlock()
	return r
}

// RelayAddrs are the relays' addresses.
func (n *Network) RelayAddrs() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	addrs := make([]string, len(n.Relays))
	for i, r := range n.Relays {
		addrs[i] = r.Addr
	}
	return addrs
}

// Dialer returns an initiator of the network whose routes are drawn from
// a source seeded with seed.
func (n *Network) Dialer(seed uint64) *gunshu.Dialer {
	return &gunshu.Dialer{Manager: n.ManagerAddr, Rand: rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)}
}

// WaitListed waits until the manager at addr lists exactly want (in any
// order), within timeout.
func WaitListed(t testing.TB, addr string, want []string, timeout time.Duration) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	waitList(t, addr, timeout, want, func(got []string) bool { return slices.Equal(got, want) })
}

// WaitListing waits until the manager at addr lists every one of want,
// and maybe others, within timeout.
func WaitListing(t testing.TB, addr string, want []string, timeout time.Duration) {
	t.Helper()
	waitList(t, addr, timeout, want, func(got []string) bool {
		return !slices.ContainsFunc(want, func(w string) bool { return !slices.Contains(got, w) })
	})
}

// waitList fetches the manager's list until done holds for it (sorted).
func waitList(t testing.TB, addr string, timeout time.Duration, want []string, done func([]string) bool) {
	t.Helper()
	var got []string
	var err error
	deadline := time.Now().Add(timeout)
	for {
		got, err = gunshu.FetchList(context.Background(), addr, time.Second, gunshu.MessageLimits{})
		slices.Sort(got)
		if err == nil && done(got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("manager %s lists %v (%v) after %v, want %v", addr, got, err, timeout, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
