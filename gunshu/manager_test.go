package gunshu_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// relayOn serves a relay answering test on addr and returns its address.
func relayOn(t testing.TB, addr string) string {
	t.Helper()
	return testnet.ServeRelayOn(t, &gunshu.Relay{}, testkit.ListenOn(t, addr))
}

// regFrom sends reg for addr to the manager from local IP from and
// returns the reply.
func regFrom(t testing.TB, mgr, from, addr string) string {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", mgr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "reg\n"+addr+"\n"); err != nil {
		t.Fatal(err)
	}
	return readReply(t, c)
}

func TestManagerMaxPerIP(t *testing.T) {
	a1, a2, a3 := relayOn(t, "127.0.0.1:0"), relayOn(t, "127.0.0.1:0"), relayOn(t, "127.0.0.1:0")
	b1 := relayOn(t, "127.0.0.2:0")
	_, port3, _ := net.SplitHostPort(a3)
	dns := newFakeDNS(t, func(name string, _ bool, _ int) []netip.Addr {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	})
	m := &gunshu.Manager{
		Registry:    gunshu.NewMemoryRegistry(0, 2),
		Policy:      gunshu.Policy{Allow: []string{"127.0.0.0/8"}, Resolver: dns.resolver()},
		TestTimeout: time.Second,
	}
	mgr := testnet.ServeManager(t, m)
	steps := []struct {
		addr, want string
	}{
		{a1, "ok\n"},
		{a2, "ok\n"},
		{a3, "fail\n"},                    // a third service on 127.0.0.1
		{"third.test:" + port3, "fail\n"}, // a name for the same machine counts the same
		{a1, "ok\n"},                      // a refresh is no new service
		{b1, "ok\n"},                      // another address has its own cap
	}
	for i, s := range steps {
		if got := regFrom(t, mgr, "127.0.0.1", s.addr); got != s.want {
			t.Fatalf("step %d: reg %s = %q, want %q", i, s.addr, got, s.want)
		}
	}
	// When one leaves, there is room again.
	if _, err := m.Registry.Remove(context.Background(), a2); err != nil {
		t.Fatal(err)
	}
	if got := regFrom(t, mgr, "127.0.0.1", a3); got != "ok\n" {
		t.Fatalf("reg after a removal = %q", got)
	}
}

func TestMemoryRegistryGroupMove(t *testing.T) {
	ctx, now := context.Background(), time.Now()
	r := gunshu.NewMemoryRegistry(3, 1)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(r.Register(ctx, "a:1", "g1", now))
	if err := r.Register(ctx, "b:1", "g1", now); !errors.Is(err, gunshu.ErrGroupFull) {
		t.Fatalf("second in g1: %v", err)
	}
	// a's name now answers from g2: it moves, freeing g1.
	must(r.Register(ctx, "a:1", "g2", now))
	must(r.Register(ctx, "b:1", "g1", now))
	// Moving into a full group drops the entry rather than overfill it.
	if err := r.Register(ctx, "a:1", "g1", now); !errors.Is(err, gunshu.ErrGroupFull) {
		t.Fatalf("move into a full group: %v", err)
	}
	addrs, _ := r.Addrs(ctx)
	if len(addrs) != 1 || addrs[0] != "b:1" {
		t.Fatalf("addrs %v", addrs)
	}
	must(r.Register(ctx, "c:1", "g3", now))
	must(r.Register(ctx, "d:1", "g4", now))
	if err := r.Register(ctx, "e:1", "g5", now); !errors.Is(err, gunshu.ErrRegistryFull) {
		t.Fatalf("past MaxServices: %v", err)
	}
}

func TestManagerRequireSourceMatch(t *testing.T) {
	// The name also resolves to 127.0.0.3, where nothing may be tested.
	lns := testkit.ListenSamePort(t, "127.0.0.2", "127.0.0.3")
	relay := testnet.ServeRelayOn(t, &gunshu.Relay{}, lns[0])
	decoy := testkit.CloseEach(t, lns[1])
	port := portOf(relay)
	dns := newFakeDNS(t, func(name string, _ bool, _ int) []netip.Addr {
		return []netip.Addr{netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.2")}
	})
	m := &gunshu.Manager{
		Policy:             gunshu.Policy{Allow: []string{"127.0.0.0/8"}, Resolver: dns.resolver()},
		RequireSourceMatch: true,
		TestTimeout:        time.Second,
	}
	mgr := testnet.ServeManager(t, m)
	if got := regFrom(t, mgr, "127.0.0.1", relay); got != "fail\n" {
		t.Fatalf("reg of another machine's address = %q, want fail", got)
	}
	if got := regFrom(t, mgr, "127.0.0.2", relay); got != "ok\n" {
		t.Fatalf("reg of its own address = %q, want ok", got)
	}
	if got := regFrom(t, mgr, "127.0.0.1", "relay.test:"+port); got != "fail\n" {
		t.Fatalf("reg of a name not resolving to the source = %q, want fail", got)
	}
	if got := regFrom(t, mgr, "127.0.0.2", "relay.test:"+port); got != "ok\n" {
		t.Fatalf("reg of a name resolving to the source = %q, want ok", got)
	}
	if n := decoy.Accepted.Load(); n != 0 {
		t.Fatalf("verification tested the name's other address %d times", n)
	}
}

func TestManagerRegisterRate(t *testing.T) {
	relay := relayOn(t, "127.0.0.1:0")
	var verified atomic.Int64
	m := &gunshu.Manager{
		Policy:       testnet.LoopbackPolicy(),
		RegisterRate: gunshu.Rate{Every: time.Hour, Burst: 3},
		TestTimeout:  time.Second,
		OnRegister:   func(string, error) { verified.Add(1) },
	}
	mgr := testnet.ServeManager(t, m)
	for i := range 3 {
		if got := regFrom(t, mgr, "127.0.0.1", relay); got != "ok\n" {
			t.Fatalf("reg %d within the burst = %q", i, got)
		}
	}
	if got := regFrom(t, mgr, "127.0.0.1", relay); got != "fail\n" {
		t.Fatalf("reg over the rate = %q, want fail", got)
	}
	if verified.Load() != 3 {
		t.Fatalf("%d registrations processed, want 3: the limited one must stop before parsing", verified.Load())
	}
	// Another source has its own bucket; malformed attempts count too.
	if got := regFrom(t, mgr, "127.0.0.2", "not an address"); got != "fail\n" {
		t.Fatalf("malformed reg = %q", got)
	}
	if got := regFrom(t, mgr, "127.0.0.2", relay); got != "ok\n" {
		t.Fatalf("reg from another source = %q, want ok", got)
	}
	// list is not rate limited.
	if got := exchange(t, mgr, "list\n"); got != "1\n"+relay+"\n" {
		t.Fatalf("list = %q", got)
	}
}

// TestRegistrarSourceAddress: a relay on a host with several addresses
// passes require_source_match by registering from its advertised IP.
func TestRegistrarSourceAddress(t *testing.T) {
	relay := relayOn(t, "127.0.0.2:0")
	m := &gunshu.Manager{Registry: &gunshu.MemoryRegistry{}, Policy: testnet.LoopbackPolicy(), RequireSourceMatch: true, TestTimeout: time.Second}
	mgr := testnet.ServeManager(t, m)
	for _, from := range []string{"127.0.0.1", "127.0.0.2", "default"} {
		reg := &gunshu.Registrar{Managers: []string{mgr}, Advertise: relay, Timeout: 2 * time.Second}
		if from != "default" { // the default dialer binds the advertised IP
			reg.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); reg.Run(ctx) }()
		deadline := time.Now().Add(3 * time.Second)
		for reg.Status()[0].When.IsZero() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		if got, want := reg.Status()[0].OK, from != "127.0.0.1"; got != want {
			t.Errorf("registering from %s: ok = %v, want %v (%s)", from, got, want, reg.Status()[0].Error)
		}
	}
}
