package gunshu_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

func TestPolicyDefaultDenied(t *testing.T) {
	var p gunshu.Policy
	denied := []string{
		"0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254",
		"127.0.0.1", "127.255.255.255", "169.254.169.254", "172.16.0.1", "172.31.255.255",
		"192.168.1.1", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
		"192.0.0.8", "192.0.0.170", "192.0.2.1", "198.51.100.7", "203.0.113.200", "198.18.0.1",
		"198.19.255.254", "192.88.99.1",
		"::", "::1", "fc00::1", "fd12:3456::1", "fe80::1", "ff02::1", "fec0::1", "feff::1",
		"100::1", "2001:db8::1", "3fff::1", "2001:2::1", "2001:20::1", "5f00::1",
		// IPv4-mapped IPv6 must not smuggle a denied IPv4 address through.
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0",
		// Every IPv6 form that carries a denied IPv4 address (#16.5).
		"64:ff9b::a9fe:a9fe",          // NAT64 well-known prefix, RFC 6052
		"64:ff9b:1::a9fe:a9fe",        // local-use NAT64, RFC 8215
		"64:ff9b:1::808:808",          // the whole local-use prefix is internal
		"::a9fe:a9fe",                 // IPv4-compatible, RFC 4291
		"::7f00:1",                    // IPv4-compatible loopback
		"::ffff:0:a9fe:a9fe",          // SIIT, RFC 7915
		"::ffff:0:a00:1",              // SIIT of 10.0.0.1
		"2002:a9fe:a9fe::1",           // 6to4, RFC 3056
		"2002:7f00:1::",               // 6to4 of loopback
		"2001:0:808:808::5601:5701",   // Teredo (client 169.254.168.254 inverted), RFC 4380
		"2001:0:a9fe:a9fe::f7f7:f7f7", // Teredo whose server is link-local
		"2606:4700::5efe:a9fe:a9fe",   // ISATAP, RFC 5214
		"2606:4700::200:5efe:a00:1",   // ISATAP (global u bit) of 10.0.0.1
	}
	for _, s := range denied {
		if err := p.AllowIP(netip.MustParseAddr(s)); !errors.Is(err, gunshu.ErrPolicyDenied) {
			t.Errorf("AllowIP(%s) = %v, want gunshu.ErrPolicyDenied", s, err)
		}
	}
	allowed := []string{
		"1.1.1.1", "9.255.255.255", "11.0.0.0", "100.63.255.255", "100.128.0.0", "172.15.255.255",
		"172.32.0.0", "192.0.1.255", "192.0.3.0", "192.167.255.255", "198.17.255.255", "198.20.0.0",
		"198.51.99.255", "203.0.114.0", "223.255.255.255",
		"2606:4700::1111", "::ffff:8.8.8.8", "2001:4860:4860::8888", "2a00::1",
		"64:ff9b::808:808",            // NAT64 of a public address
		"2002:808:808::1",             // 6to4 of a public address
		"2606:4700::200:5efe:808:808", // ISATAP of a public address
	}
	for _, s := range allowed {
		if err := p.AllowIP(netip.MustParseAddr(s)); err != nil {
			t.Errorf("AllowIP(%s) = %v, want allowed", s, err)
		}
	}
}

// TestEmbeddedIPv4 checks where each form keeps its IPv4 address.
func TestEmbeddedIPv4(t *testing.T) {
	cases := map[string][]string{
		"64:ff9b::1.2.3.4":            {"1.2.3.4"},
		"64:ff9b:1::1.2.3.4":          {"1.2.3.4"},
		"::1.2.3.4":                   {"1.2.3.4"},
		"::ffff:0:1.2.3.4":            {"1.2.3.4"},
		"2002:102:304::":              {"1.2.3.4"},
		"2001:0:102:304::fefd:fcfb":   {"1.2.3.4", "1.2.3.4"},
		"2a00:1:2:3:0:5efe:1.2.3.4":   {"1.2.3.4"},
		"2a00:1:2:3:300:5efe:1.2.3.4": {"1.2.3.4"},
		"2a00:1:2:3:400:5efe:1.2.3.4": nil,
		"2606:4700::1111":             nil,
		"1.2.3.4":                     nil,
	}
	for in, want := range cases {
		var got []string
		for _, a := range gunshu.EmbeddedIPv4(netip.MustParseAddr(in)) {
			got = append(got, a.String())
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("gunshu.EmbeddedIPv4(%s) = %v, want %v", in, got, want)
		}
	}
}

// TestSecurityDocShowsTheRangeTables keeps SECURITY.md in step with the
// one table in ranges.go: between its markers it must hold gunshu.RangeTables().
// GUNSHU_UPDATE_DOCS=1 rewrites it.
func TestSecurityDocShowsTheRangeTables(t *testing.T) {
	const file, begin, end = "../SECURITY.md", "<!-- range tables: begin (generated from gunshu/ranges.go) -->\n", "<!-- range tables: end -->"
	doc, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	i, j := strings.Index(string(doc), begin), strings.Index(string(doc), end)
	if i < 0 || j < i {
		t.Fatalf("SECURITY.md has no %q … %q markers", begin, end)
	}
	want := gunshu.RangeTables()
	if got := string(doc[i+len(begin) : j]); got == want {
		return
	}
	if os.Getenv("GUNSHU_UPDATE_DOCS") == "1" {
		updated := string(doc[:i+len(begin)]) + want + string(doc[j:])
		if err := os.WriteFile(file, []byte(updated), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("SECURITY.md does not hold the range tables of gunshu/ranges.go; run with GUNSHU_UPDATE_DOCS=1")
}

func TestPolicyAllowAndDeny(t *testing.T) {
	p := gunshu.Policy{
		Allow: []string{"10.1.0.0/16", "127.0.0.1", "fd00::/8", "192.0.2.0/24"},
		Deny:  []string{"10.1.2.0/24", "9.9.9.9", "192.0.2.0/25"},
	}
	cases := map[string]bool{
		"10.1.1.1":         true,  // allowed range
		"10.1.2.3":         false, // deny wins over allow
		"10.2.0.1":         false, // default-denied, not allowed
		"127.0.0.1":        true,  // a single allowed address
		"127.0.0.2":        false,
		"::ffff:127.0.0.1": true, // mapped form of an allowed address
		"::ffff:10.1.2.3":  false,
		"fd00::1":          true,
		"fc00::1":          false,
		"9.9.9.9":          false, // public but denied
		"9.9.9.10":         true,
		"192.0.2.1":        false, // deny /25 wins over allow /24
		"192.0.2.200":      true,
	}
	for s, want := range cases {
		err := p.AllowIP(netip.MustParseAddr(s))
		if (err == nil) != want {
			t.Errorf("AllowIP(%s) = %v, want allowed=%v", s, err, want)
		}
		if err != nil && !errors.Is(err, gunshu.ErrPolicyDenied) {
			t.Errorf("AllowIP(%s): %v does not wrap ErrPolicyDenied", s, err)
		}
	}
}

func TestPolicyPorts(t *testing.T) {
	ctx := context.Background()
	var p gunshu.Policy
	if _, err := p.Resolve(ctx, "1.1.1.1:25"); !errors.Is(err, gunshu.ErrPolicyDenied) {
		t.Errorf("default policy, port 25: %v", err)
	}
	if _, err := p.Resolve(ctx, "1.1.1.1:587"); err != nil {
		t.Errorf("default policy, port 587: %v", err)
	}
	custom := gunshu.Policy{DenyPorts: []uint16{22, 3306}}
	for port, want := range map[string]bool{"25": true, "22": false, "3306": false, "443": true} {
		_, err := custom.Resolve(ctx, "1.1.1.1:"+port)
		if (err == nil) != want {
			t.Errorf("DenyPorts [22 3306], port %s: %v", port, err)
		}
	}
	open := gunshu.Policy{DenyPorts: []uint16{}}
	if _, err := open.Resolve(ctx, "1.1.1.1:25"); err != nil {
		t.Errorf("empty DenyPorts, port 25: %v", err)
	}
	for _, bad := range []string{"192.0.2.1:0", "192.0.2.1", "192.0.2.1:65536", "192.0.2.1:x"} {
		if _, err := p.Resolve(ctx, bad); !errors.Is(err, gunshu.ErrBadAddress) {
			t.Errorf("Resolve(%q) = %v, want ErrBadAddress", bad, err)
		}
	}
}

func TestPolicyResolveUnmaps(t *testing.T) {
	p := gunshu.Policy{Allow: []string{"127.0.0.0/8"}}
	got, err := p.Resolve(context.Background(), "[::ffff:127.0.0.1]:7001")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != netip.MustParseAddrPort("127.0.0.1:7001") {
		t.Fatalf("got %v, want [127.0.0.1:7001]", got)
	}
	var def gunshu.Policy
	if _, err := def.Resolve(context.Background(), "[::ffff:127.0.0.1]:7001"); !errors.Is(err, gunshu.ErrPolicyDenied) {
		t.Fatalf("mapped loopback under the default policy: %v", err)
	}
}

// TestPolicyHostNames resolves through "localhost", which every resolver
// maps to loopback without the network.
func TestPolicyHostNames(t *testing.T) {
	ctx := context.Background()
	var def gunshu.Policy
	if _, err := def.Resolve(ctx, "localhost:7001"); !errors.Is(err, gunshu.ErrPolicyDenied) {
		t.Errorf("localhost under the default policy: %v", err)
	}
	byName := gunshu.Policy{Allow: []string{"localhost"}}
	got, err := byName.Resolve(ctx, "localhost:7001")
	if err != nil {
		t.Fatalf("allowed host name: %v", err)
	}
	for _, ap := range got {
		if !ap.Addr().IsLoopback() {
			t.Errorf("localhost resolved to %v", ap)
		}
	}
	denied := gunshu.Policy{Allow: []string{"localhost", "127.0.0.0/8", "::1/128"}, Deny: []string{"localhost"}}
	if _, err := denied.Resolve(ctx, "LOCALHOST.:7001"); !errors.Is(err, gunshu.ErrPolicyDenied) {
		t.Errorf("denied host name (other case, trailing dot): %v", err)
	}
	// A name allowed by suffix rule, whose address is in an explicitly
	// denied range, is refused: deny wins over allow here too.
	suffix := gunshu.Policy{Allow: []string{".localhost", "localhost"}, Deny: []string{"127.0.0.0/8", "::1/128"}}
	if _, err := suffix.Resolve(ctx, "localhost:7001"); !errors.Is(err, gunshu.ErrPolicyDenied) {
		t.Errorf("allowed name resolving into a denied range: %v", err)
	}
}

func TestPolicyCompileErrors(t *testing.T) {
	for _, p := range []*gunshu.Policy{
		{Allow: []string{"10.0.0.0/33"}},
		{Allow: []string{""}},
		{Deny: []string{"not a host"}},
		{Deny: []string{"10.0.0.0/8/8"}},
	} {
		if err := p.Compile(); err == nil {
			t.Errorf("Compile(%+v) accepted a bad rule", p)
		}
		if err := p.AllowIP(netip.MustParseAddr("192.0.2.1")); err == nil {
			t.Errorf("a policy that did not compile allowed an address")
		}
	}
}

// TestPolicyDial: Dial refuses before connecting, and connects to what
// Resolve checked.
func TestPolicyDial(t *testing.T) {
	ln := testkit.Listen(t)
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), ioWait)
	defer cancel()
	var def gunshu.Policy
	if _, err := def.Dial(ctx, ln.Addr().String(), &net.Dialer{}); !errors.Is(err, gunshu.ErrPolicyDenied) {
		t.Fatalf("default policy dialed loopback: %v", err)
	}
	select {
	case <-accepted:
		t.Fatal("a denied dial reached the listener")
	case <-time.After(20 * time.Millisecond):
	}
	p := testnet.LoopbackPolicy()
	c, err := p.Dial(ctx, ln.Addr().String(), &net.Dialer{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	<-accepted
}
