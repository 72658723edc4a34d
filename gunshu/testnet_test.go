package gunshu

import (
	"github.com/gunshu/caddy-gunshu/gunshu/forward"

	"context"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// loopbackPolicy lets tests reach 127.0.0.0/8, which relays refuse by
// default.
func loopbackPolicy() Policy { return Policy{Allow: []string{"127.0.0.0/8"}} }

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// testNet is a whole Gunshu network on loopback: a manager, relays and
// whatever the test adds. Everything stops when the test ends.
type testNet struct {
	t       testing.TB
	manager *Manager
	mgrAddr string
	relays  []*testRelay
	wg      sync.WaitGroup
	closers []func()
	// configure, when set, adjusts every relay before it serves.
	configure func(*Relay)
}

type testRelay struct {
	relay *Relay
	ln    net.Listener
	addr  string
}

func newTestNet(t testing.TB, relays int) *testNet {
	t.Helper()
	return newTestNetWith(t, relays, nil)
}

// newTestNetWith is newTestNet with configure applied to every relay.
func newTestNetWith(t testing.TB, relays int, configure func(*Relay)) *testNet {
	t.Helper()
	n := &testNet{t: t, configure: configure}
	n.manager = &Manager{Policy: loopbackPolicy(), TestTimeout: time.Second}
	ln := listen(t)
	n.mgrAddr = ln.Addr().String()
	n.serve(ln, func() { _ = n.manager.Serve(ln) })
	for range relays {
		n.addRelay(t)
	}
	t.Cleanup(n.close)
	return n
}

func (n *testNet) serve(ln net.Listener, run func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		run()
	}()
	n.closers = append(n.closers, func() { ln.Close() })
}

func (n *testNet) addRelay(t testing.TB) *testRelay {
	t.Helper()
	ln := listen(t)
	r := &testRelay{relay: &Relay{Policy: loopbackPolicy()}, ln: ln, addr: ln.Addr().String()}
	r.relay.Self = []string{r.addr}
	if n.configure != nil {
		n.configure(r.relay)
	}
	n.serve(ln, func() { _ = r.relay.Serve(ln) })
	n.closers = append(n.closers, func() { _ = r.relay.Close() })
	if err := Register(context.Background(), n.mgrAddr, r.addr, 5*time.Second); err != nil {
		t.Fatalf("registering relay %s: %v", r.addr, err)
	}
	n.relays = append(n.relays, r)
	return r
}

func (n *testNet) close() {
	for _, c := range n.closers {
		c()
	}
	n.wg.Wait()
}

// dialer returns an initiator for the network with a seeded source.
func (n *testNet) dialer(seed uint64) *Dialer {
	return &Dialer{Manager: n.mgrAddr, Rand: rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)}
}

// echoResponder serves a responder that echoes every stream back, and
// returns its address.
func (n *testNet) echoResponder(t testing.TB) string {
	t.Helper()
	ln := listen(t)
	rl := (&Responder{}).Listen(ln, 0)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			c, err := rl.Accept()
			if err != nil {
				return
			}
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				defer c.Close()
				buf := make([]byte, 32<<10)
				for {
					k, err := c.Read(buf)
					if k > 0 {
						if _, werr := c.Write(buf[:k]); werr != nil {
							return
						}
					}
					if err != nil {
						_ = forward.CloseWrite(c)
						return
					}
				}
			}()
		}
	}()
	n.closers = append(n.closers, func() { rl.Close(); rl.Wait() })
	return ln.Addr().String()
}
