package gunshu

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestLimiterCounts(t *testing.T) {
	l := &SessionLimiter{MaxSessions: 3, MaxPerIP: 2}
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.Acquire(a))
	must(l.Acquire(netip.MustParseAddr("::ffff:192.0.2.1")))
	if err := l.Acquire(a); !errors.Is(err, ErrTooManyFromIP) {
		t.Fatalf("third from a: %v", err)
	}
	must(l.Acquire(b))
	if err := l.Acquire(c); !errors.Is(err, ErrTooManySessions) {
		t.Fatalf("fourth in all: %v", err)
	}
	l.Release(a)
	must(l.Acquire(c))
	l.Release(a)
	l.Release(b)
	l.Release(c)
	if l.Sessions() != 0 || len(l.perSrc) != 0 {
		t.Fatalf("after release: %d sessions, %d sources remembered", l.Sessions(), len(l.perSrc))
	}
	// One IPv6 /64 is one source.
	v6 := &SessionLimiter{MaxPerIP: 1}
	must(v6.Acquire(netip.MustParseAddr("2001:db8::1")))
	if err := v6.Acquire(netip.MustParseAddr("2001:db8::2")); !errors.Is(err, ErrTooManyFromIP) {
		t.Fatalf("same /64: %v", err)
	}
	must(v6.Acquire(netip.MustParseAddr("2001:db8:1::1")))
	var none *SessionLimiter
	must(none.Acquire(a))
	none.Release(a)
}

func TestRateLimiter(t *testing.T) {
	var rl rateLimiter
	rate := Rate{Every: time.Second, Burst: 2}
	now := time.Unix(1000, 0)
	a := netip.MustParseAddr("192.0.2.1")
	for i, want := range []bool{true, true, false} {
		if got := rl.allow(rate, a, now); got != want {
			t.Fatalf("attempt %d: %v", i, got)
		}
	}
	if !rl.allow(rate, a, now.Add(time.Second)) {
		t.Fatal("no token after one period")
	}
	if rl.allow(rate, a, now.Add(time.Second)) {
		t.Fatal("two tokens after one period")
	}
	// One IPv6 /64 is one source.
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff:2")
	rl.allow(rate, v6a, now)
	rl.allow(rate, v6b, now)
	if rl.allow(rate, v6a, now) {
		t.Fatal("an IPv6 /64 got more than its burst")
	}
	if !rl.allow(rate, netip.MustParseAddr("2001:db8:0:1::1"), now) {
		t.Fatal("another /64 was limited")
	}
	// The table stays bounded under a flood of sources, forgetting
	// refilled ones first.
	base := netip.MustParseAddr("10.0.0.0").As4()
	for i := range maxRateSources + 500 {
		ip := base
		ip[1], ip[2], ip[3] = byte(i>>16), byte(i>>8), byte(i)
		rl.allow(rate, netip.AddrFrom4(ip), now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := rl.len(); n > maxRateSources {
		t.Fatalf("%d sources remembered, bound %d", n, maxRateSources)
	}
	if !rl.allow(Rate{}, a, now) {
		t.Fatal("the zero Rate limited")
	}
}
