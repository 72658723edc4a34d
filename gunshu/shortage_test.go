package gunshu_test

import (
	"context"
	"net"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// shortDialer is a net.Dialer whose first dials fail for want of
// descriptors, as in a process coming back from its open-file limit.
func shortDialer(failures int32) (*net.Dialer, *atomic.Int32) {
	left := &atomic.Int32{}
	left.Store(failures)
	return &net.Dialer{Control: func(string, string, syscall.RawConn) error {
		if left.Add(-1) >= 0 {
			return syscall.EMFILE
		}
		return nil
	}}, left
}

// TestDialsRideOutDescriptorShortage: an initiator's dial to its first
// hop and a relay's dial to its next hop that fail for want of
// descriptors are tried again after a moment, within the dial timeout,
// so the route is built at its first attempt instead of failing it.
func TestDialsRideOutDescriptorShortage(t *testing.T) {
	relayDialer, relayLeft := shortDialer(3)
	n := testnet.NewWith(t, 1, func(r *gunshu.Relay) { r.Dialer = relayDialer })
	responder := testnet.EchoResponder(t)
	d := n.Dialer(1)
	var initiatorLeft *atomic.Int32
	d.NetDialer, initiatorLeft = shortDialer(3)
	route, err := d.Establish(context.Background(), responder)
	if err != nil {
		t.Fatalf("no route: %v", err)
	}
	defer route.Conn.Close()
	if route.Attempts != 1 {
		t.Errorf("the route took %d attempts, want 1: a dial short of descriptors must not spend one", route.Attempts)
	}
	if relayLeft.Load() >= 0 || initiatorLeft.Load() >= 0 {
		t.Errorf("failures left: relay %d, initiator %d; want every one spent", relayLeft.Load()+1, initiatorLeft.Load()+1)
	}
}
