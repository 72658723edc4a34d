package registrytest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// networkCap checks the per-network cap on reg, whose MaxPerNetwork is 3
// and per-IP cap 2 or more: services of one IPv4 /24 or IPv6 /48 count
// together whatever their per-IP group, a group that is no prefix has no
// network, and removing or moving a service frees its place.
func networkCap(t *testing.T, reg gunshu.Registry) {
	t.Helper()
	ctx, now := context.Background(), time.Now()
	register := func(addr, group string) error { return reg.Register(ctx, addr, group, now) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(register("198.51.100.1:7001", "198.51.100.1/32"))
	must(register("198.51.100.2:7001", "198.51.100.2/32"))
	must(register("198.51.100.3:7001", "198.51.100.3/32"))
	if err := register("198.51.100.4:7001", "198.51.100.4/32"); !errors.Is(err, gunshu.ErrNetworkFull) {
		t.Fatalf("a fourth service in one /24: %v, want ErrNetworkFull", err)
	}
	// A refresh is no new service.
	must(register("198.51.100.1:7001", "198.51.100.1/32"))
	// The next /24 has room.
	must(register("198.51.101.1:7001", "198.51.101.1/32"))
	// IPv6: /64 groups in one /48 share the network.
	must(register("[2001:db8:1:1::1]:7001", "2001:db8:1:1::/64"))
	must(register("[2001:db8:1:2::1]:7001", "2001:db8:1:2::/64"))
	must(register("[2001:db8:1:3::1]:7001", "2001:db8:1:3::/64"))
	if err := register("[2001:db8:1:4::1]:7001", "2001:db8:1:4::/64"); !errors.Is(err, gunshu.ErrNetworkFull) {
		t.Fatalf("a fourth service in one /48: %v, want ErrNetworkFull", err)
	}
	must(register("[2001:db8:2::1]:7001", "2001:db8:2::/64"))
	// Groups that are no prefix are not capped per network.
	for _, a := range []string{"a.example:1", "b.example:1", "c.example:1", "d.example:1"} {
		must(register(a, "g-"+a))
	}
	// Removing a service frees its place in the network.
	if removed, err := reg.Remove(ctx, "198.51.100.2:7001"); err != nil || !removed {
		t.Fatalf("Remove: %v, %v", removed, err)
	}
	must(register("198.51.100.4:7001", "198.51.100.4/32"))
	// A service that moves to another network leaves its old one.
	must(register("198.51.100.3:7001", "198.51.102.3/32"))
	must(register("198.51.100.5:7001", "198.51.100.5/32"))
	if err := register("198.51.100.6:7001", "198.51.100.6/32"); !errors.Is(err, gunshu.ErrNetworkFull) {
		t.Fatalf("after the move, the /24 is full again: %v, want ErrNetworkFull", err)
	}
}
