// Package testnet is the test fixture of a whole Gunshu network on
// loopback, without Caddy: a manager, relays registered with it, echo
// responders and seeded initiators. Every package's tests that need a
// network of package gunshu's roles use it; the helpers that need no
// Gunshu are in package testkit.
package testnet

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// LoopbackPolicy lets a relay or manager reach 127.0.0.0/8, which they
// refuse by default.
func LoopbackPolicy() gunshu.Policy { return gunshu.Policy{Allow: testkit.Loopback} }

// Network is a manager and relays on loopback, and whatever the test adds
// with Serve and AtClose. Everything stops when the test ends.
type Network struct {
	Manager *gunshu.Manager
	// ManagerAddr is where the manager listens.
	ManagerAddr string
	// Relays are registered with the manager, in the order they were added.
	Relays []*Relay

	configure func(*gunshu.Relay)
	wg        sync.WaitGroup
	mu        sync.Mutex
	closers   []func()
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
	ln := testkit.Listen(t)
	n.ManagerAddr = ln.Addr().String()
	n.Serve(ln, func() { _ = n.Manager.Serve(ln) })
	t.Cleanup(n.close)
	for range relays {
		n.AddRelay(t)
	}
	return n
}

// Serve runs run on a goroutine of its own; when the network stops it
// closes ln and waits for run to return.
func (n *Network) Serve(ln net.Listener, run func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		run()
	}()
	n.AtClose(func() { ln.Close() })
}

// AtClose adds f to what stopping the network does, in order, before it
// waits for what Serve started.
func (n *Network) AtClose(f func()) {
	n.mu.Lock()
	n.closers = append(n.closers, f)
	n.mu.Unlock()
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
	n.Serve(ln, func() { _ = r.Serve(ln) })
	n.AtClose(func() { _ = r.Close() })
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

func (n *Network) close() {
	n.mu.Lock()
	closers := n.closers
	n.mu.Unlock()
	for _, c := range closers {
		c()
	}
	n.wg.Wait()
}

// Dialer returns an initiator of the network whose routes are drawn from
// a source seeded with seed.
func (n *Network) Dialer(seed uint64) *gunshu.Dialer {
	return &gunshu.Dialer{Manager: n.ManagerAddr, Rand: rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)}
}

// EchoResponder starts a responder that echoes every stream back, and
// returns its address. When the test ends it closes the responder and
// every stream.
func EchoResponder(t testing.TB) string {
	t.Helper()
	ln := testkit.Listen(t)
	rl := (&gunshu.Responder{}).Listen(ln, 0)
	t.Cleanup(rl.Wait)
	testkit.Serve(t, rl, testkit.Echo)
	return ln.Addr().String()
}
