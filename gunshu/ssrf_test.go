package gunshu_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// ssrfSpellings are ways to name 127.0.0.1 (or ::1) at port; all must be
// refused by a default policy, as malformed or as denied.
func ssrfSpellings(port string) []string {
	return []string{
		"127.0.0.1:" + port,
		"127.0.0.2:" + port,
		"[::ffff:127.0.0.1]:" + port,
		"[::ffff:7f00:1]:" + port,
		"[::1]:" + port,
		"[64:ff9b::7f00:1]:" + port, // NAT64 of 127.0.0.1
		"[2002:7f00:1::1]:" + port,  // 6to4 of 127.0.0.1
		"2130706433:" + port,        // decimal
		"0x7f000001:" + port,        // hexadecimal
		"0X7F000001:" + port,
		"0x7f.0.0.1:" + port,
		"127.0.0.0x1:" + port,
		"0177.0.0.1:" + port, // octal
		"017700000001:" + port,
		"127.1:" + port,
		"localhost:" + port,
		"LOCALHOST.:" + port,
		"loopback.ssrf.test:" + port, // fake DNS: 127.0.0.1
		"mixed.ssrf.test:" + port,    // fake DNS: a public address and 127.0.0.1
		"v6.ssrf.test:" + port,       // fake DNS: ::1
		"mapped.ssrf.test:" + port,   // fake DNS: ::ffff:127.0.0.1
	}
}

func ssrfResolver(t testing.TB) *fakeDNS {
	return newFakeDNS(t, func(name string, _ bool, _ int) []netip.Addr {
		switch name {
		case "loopback.ssrf.test":
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		case "mixed.ssrf.test":
			return []netip.Addr{netip.MustParseAddr("93.184.216.34"), netip.MustParseAddr("127.0.0.1")}
		case "v6.ssrf.test":
			return []netip.Addr{netip.MustParseAddr("::1")}
		case "mapped.ssrf.test":
			return []netip.Addr{netip.MustParseAddr("::ffff:127.0.0.1")}
		case "localhost":
			return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}
		}
		return nil
	})
}

func TestPolicyRefusesInternalTargets(t *testing.T) {
	dns := ssrfResolver(t)
	p := &gunshu.Policy{Resolver: dns.resolver()}
	refused := append(ssrfSpellings("80"),
		"10.1.2.3:80", "172.16.0.1:80", "172.31.255.255:80", "192.168.1.1:80",
		"100.64.0.1:80", "169.254.169.254:80", "[::ffff:169.254.169.254]:80",
		"[2002:a9fe:a9fe::]:80", "[64:ff9b::a9fe:a9fe]:80", "[64:ff9b::a00:1]:80",
		"0.0.0.0:80", "[::]:80", "[fe80::1]:80", "[fc00::1]:80", "[fd12:3456::1]:80",
		"[ff02::1]:80", "224.0.0.1:80", "240.0.0.1:80", "255.255.255.255:80",
		"93.184.216.34:25", // a public address, but the mail port
		"[fe80::1%lo]:80",
	)
	for _, addr := range refused {
		t.Run(addr, func(t *testing.T) {
			canon, err := gunshu.ParseAddr(addr)
			if err != nil {
				if !errors.Is(err, gunshu.ErrBadAddress) {
					t.Fatalf("ParseAddr: %v, want ErrBadAddress", err)
				}
				return
			}
			got, err := p.Resolve(context.Background(), canon)
			if !errors.Is(err, gunshu.ErrPolicyDenied) {
				t.Fatalf("Resolve(%s) = %v, %v; want ErrPolicyDenied", canon, got, err)
			}
		})
	}
	// The same policy lets public addresses through, so the refusals
	// above are not a policy that refuses everything.
	for _, addr := range []string{"93.184.216.34:80", "[2606:4700::1111]:443", "[64:ff9b::5db8:d822]:80", "[2002:5db8:d822::1]:80"} {
		if _, err := p.Resolve(context.Background(), addr); err != nil {
			t.Errorf("Resolve(%s): %v, want allowed", addr, err)
		}
	}
}

func TestPolicyDeniesLocalhostWithSystemResolver(t *testing.T) {
	var p gunshu.Policy
	_, err := p.Resolve(context.Background(), "localhost:80")
	if !errors.Is(err, gunshu.ErrPolicyDenied) {
		t.Fatalf("localhost: %v, want ErrPolicyDenied", err)
	}
}

func TestPolicyAllowAndDenyRules(t *testing.T) {
	dns := newFakeDNS(t, func(name string, _ bool, _ int) []netip.Addr {
		switch name {
		case "intranet.example", "a.corp.example":
			return []netip.Addr{netip.MustParseAddr("10.0.0.7")}
		case "public.example":
			return []netip.Addr{netip.MustParseAddr("198.51.100.7")}
		}
		return nil
	})
	p := &gunshu.Policy{
		Allow:     []string{"10.0.0.0/24", ".corp.example"},
		Deny:      []string{"10.0.0.7", "198.51.100.0/24", "blocked.example"},
		DenyPorts: []uint16{22},
		Resolver:  dns.resolver(),
	}
	cases := map[string]bool{
		"10.0.0.5:80":             true,  // allowed range
		"10.0.0.7:80":             false, // deny wins over allow
		"10.0.1.1:80":             false, // default-denied, not in allow
		"198.51.100.9:80":         false, // extra deny
		"9.9.9.9:80":              true,
		"9.9.9.9:22":              false, // DenyPorts replaces the default
		"9.9.9.9:25":              true,
		"blocked.example:80":      false,
		"intranet.example:80":     false, // resolves into the denied 10.0.0.7
		"public.example:80":       false,
		"a.corp.example:80":       false, // allowed name, but its address is denied
		"unknown.invalid.:80":     false, // does not resolve
		"[64:ff9b::a00:5]:80":     true,  // NAT64 of an allowed address
		"[64:ff9b::c633:6409]:80": false,
	}
	for addr, want := range cases {
		_, err := p.Resolve(context.Background(), addr)
		if (err == nil) != want {
			t.Errorf("Resolve(%s) = %v, want allowed=%v", addr, err, want)
		}
	}
	for _, bad := range [][]string{{"10.0.0.0/33"}, {""}, {"bad name!"}, {"0x7f000001"}} {
		if err := (&gunshu.Policy{Allow: bad}).Compile(); err == nil {
			t.Errorf("Compile(Allow: %q) accepted", bad)
		}
	}
}

// TestRelayRefusesSSRF sends est naming an internal service, in every
// spelling, to a relay with the default policy: each gets fail, and the
// service never sees a connection.
func TestRelayRefusesSSRF(t *testing.T) {
	dns := ssrfResolver(t)
	lns := testkit.ListenSamePort(t, "127.0.0.1", "::1")
	target, target6 := testkit.CloseEach(t, lns[0]), testkit.CloseEach(t, lns[1])
	port := portOf(target.Addr().String())
	r := &gunshu.Relay{Policy: gunshu.Policy{Resolver: dns.resolver()}, Timeouts: gunshu.Timeouts{Dial: time.Second, Route: 2 * time.Second}}
	relayAddr := testnet.ServeRelay(t, r)
	addrs := append(ssrfSpellings(port), "169.254.169.254:80", "10.0.0.1:80", "192.168.0.1:80")
	for _, addr := range addrs {
		t.Run(addr, func(t *testing.T) {
			start := time.Now()
			reply := exchange(t, relayAddr, "est\n1\n"+addr+"\n")
			if reply != "fail\n" {
				t.Fatalf("reply %q, want fail", reply)
			}
			// Refused before dialing: no dial timeout was waited for.
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("refusal took %v", d)
			}
		})
	}
	if n := target.Accepted.Load() + target6.Accepted.Load(); n != 0 {
		t.Fatalf("the internal service got %d connections", n)
	}
	// The relay still works: a test exchange gets ok.
	if reply := exchange(t, relayAddr, "test\n"); reply != "ok\n" {
		t.Fatalf("test after the attempts: %q", reply)
	}
}

// TestRelayDialsTheCheckedAddress makes a name resolve first to an
// allowed address and then to a denied one: the relay must connect to
// the address it checked, once resolved, and never to the later answer.
func TestRelayDialsTheCheckedAddress(t *testing.T) {
	lns := testkit.ListenSamePort(t, "127.0.0.2", "127.0.0.1")
	allowed, trapped := lns[0], testkit.CloseEach(t, lns[1])
	port := portOf(allowed.Addr().String())
	dns := newFakeDNS(t, func(name string, ipv6 bool, seen int) []netip.Addr {
		if seen == 0 {
			return []netip.Addr{netip.MustParseAddr("127.0.0.2")}
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	})
	// The allowed address is a responder; the trap sits on the rebinding
	// answer at the same port.
	rl := (&gunshu.Responder{}).Listen(allowed, 0)
	t.Cleanup(func() { rl.Close(); rl.Wait() })
	go func() {
		for {
			c, err := rl.Accept()
			if err != nil {
				return
			}
			_, _ = io.Copy(c, c)
			c.Close()
		}
	}()
	r := &gunshu.Relay{Policy: gunshu.Policy{Allow: []string{"127.0.0.2/32"}, Resolver: dns.resolver()}}
	relayAddr := testnet.ServeRelay(t, r)
	conn := dialT(t, relayAddr)
	if _, err := conn.Write([]byte("est\n1\nrebind.test:" + port + "\n")); err != nil {
		t.Fatal(err)
	}
	if line := readReply(t, conn); line != "ok\n" {
		t.Fatalf("reply %q, want ok", line)
	}
	if _, err := conn.Write([]byte("forward\nping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	conn.Close()
	if n := trapped.Accepted.Load(); n != 0 {
		t.Fatalf("the rebinding answer was dialed %d times", n)
	}
	if n := dns.count("rebind.test"); n > 2 {
		t.Fatalf("the name was resolved %d times (A and AAAA once each expected)", n)
	}
}

// TestManagerNeverTestsDeniedAddresses registers internal addresses with
// a manager that has the default policy: every reg gets fail without a
// single connection to them, and patrol does not test one that got into
// the registry by other means.
func TestManagerNeverTestsDeniedAddresses(t *testing.T) {
	dns := ssrfResolver(t)
	target := testkit.CloseEach(t, testkit.Listen(t))
	port := portOf(target.Addr().String())
	m := &gunshu.Manager{Policy: gunshu.Policy{Resolver: dns.resolver()}, TestTimeout: time.Second}
	mgrAddr := testnet.ServeManager(t, m)
	for _, addr := range ssrfSpellings(port) {
		if reply := exchange(t, mgrAddr, "reg\n"+addr+"\n"); reply != "fail\n" {
			t.Errorf("reg %s: %q, want fail", addr, reply)
		}
	}
	// Planted directly, as a shared registry written by another manager
	// with a laxer policy might hold it.
	planted := "127.0.0.1:" + port
	if err := m.Registry.Register(context.Background(), planted, "127.0.0.1/32", time.Now()); err != nil {
		t.Fatal(err)
	}
	m.PatrolOnce(context.Background())
	if addrs, _ := m.Registry.Addrs(context.Background()); len(addrs) != 0 {
		t.Errorf("patrol kept %v", addrs)
	}
	if n := target.Accepted.Load(); n != 0 {
		t.Fatalf("the denied address was tested %d times", n)
	}
}

// TestManagerVerifiesTheCheckedAddress: a registered name that resolves
// to an allowed address and then to a denied one is verified at the
// checked address, which is also what its per-IP group is.
func TestManagerVerifiesTheCheckedAddress(t *testing.T) {
	lns := testkit.ListenSamePort(t, "127.0.0.2", "127.0.0.1")
	relayLn, trapped := lns[0], testkit.CloseEach(t, lns[1])
	port := portOf(relayLn.Addr().String())
	go func() { _ = (&gunshu.Relay{}).Serve(relayLn) }()
	t.Cleanup(func() { relayLn.Close() })
	dns := newFakeDNS(t, func(name string, ipv6 bool, seen int) []netip.Addr {
		if seen == 0 {
			return []netip.Addr{netip.MustParseAddr("127.0.0.2")}
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	})
	m := &gunshu.Manager{Policy: gunshu.Policy{Allow: []string{"127.0.0.2/32"}, Resolver: dns.resolver()}, TestTimeout: time.Second}
	if err := m.Register(context.Background(), "relay.rebind.test:"+port); err != nil {
		t.Fatalf("register: %v", err)
	}
	services, _ := m.Registry.Services(context.Background())
	if len(services) != 1 || services[0].Group != "127.0.0.2/32" {
		t.Fatalf("services %+v", services)
	}
	if n := trapped.Accepted.Load(); n != 0 {
		t.Fatalf("verification dialed the rebinding answer %d times", n)
	}
}

func dialT(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// readReply reads one reply line (at most 16 bytes).
func readReply(t testing.TB, c net.Conn) string {
	t.Helper()
	var line []byte
	b := make([]byte, 1)
	for len(line) < 16 {
		if _, err := c.Read(b); err != nil {
			return string(line)
		}
		line = append(line, b[0])
		if b[0] == '\n' {
			break
		}
	}
	return string(line)
}

// inetAton reports whether s is an IPv4 address in one of the spellings
// inet_aton(3) accepts: one to four parts, each decimal, octal (leading
// 0) or hexadecimal (0x), the last filling the remaining bytes. A
// resolver built on it (glibc's getaddrinfo is) turns such a "name" into
// an address without asking DNS.
func inetAton(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return false
	}
	for i, p := range parts {
		base, digits := 10, p
		switch {
		case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
			base, digits = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, digits = 8, p[1:]
		}
		v, err := strconv.ParseUint(digits, base, 32)
		if err != nil || digits == "" {
			return false
		}
		limit := uint64(255)
		if i == len(parts)-1 {
			limit = 1<<(8*(5-len(parts))) - 1
		}
		if v > limit {
			return false
		}
	}
	return true
}

func TestInetAton(t *testing.T) {
	for s, want := range map[string]bool{
		"127.0.0.1": true, "2130706433": true, "0x7f000001": true, "0x7f.1": true,
		"127.1": true, "0177.0.0.1": true, "017700000001": true, "127.0.0.0x1": true,
		"256.0.0.1": false, "1.2.3.4.5": false, "example.com": false, "0x": false,
		"08.0.0.1": false, "1e5": false, "": false,
	} {
		if got := inetAton(s); got != want {
			t.Errorf("inetAton(%q) = %v", s, got)
		}
	}
}

// FuzzParseAddrNoNumericNames: no host that ParseAddr accepts as a DNS
// name is an IPv4 address in an inet_aton spelling, so no resolver can
// turn a listed "name" into 127.0.0.1 behind the policy's back.
func FuzzParseAddrNoNumericNames(f *testing.F) {
	for _, s := range ssrfSpellings("80") {
		f.Add(s)
	}
	f.Add("relay.example.net:7001")
	f.Add("a0x1.example:1")
	f.Fuzz(func(t *testing.T, s string) {
		out, err := gunshu.ParseAddr(s)
		if err != nil {
			return
		}
		host, _, _ := net.SplitHostPort(out)
		if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
			return
		}
		for _, h := range []string{host, strings.TrimSuffix(host, ".")} {
			if inetAton(h) {
				t.Fatalf("ParseAddr(%q) accepted %q, which inet_aton reads as an IPv4 address", s, out)
			}
		}
	})
}
