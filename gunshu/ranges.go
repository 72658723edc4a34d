package gunshu

import (
	"fmt"
	"net/netip"
	"strings"
)

// This file is the one place that says which addresses are not the open
// internet. SECURITY.md shows the same two tables; a test keeps it in step
// with these.

// specialRange is an address range a relay never dials and a manager never
// lists unless the operator allows it.
type specialRange struct {
	prefix netip.Prefix
	rfc    string
	what   string
}

// DefaultDeniedRanges lists, with the RFC that reserves each, the ranges a
// Policy denies unless allowed: a relay must not become a way into its own
// network, nor dial addresses that reach no one on the internet.
var defaultDeniedRanges = []specialRange{
	{pfx("0.0.0.0/8"), "RFC 791, RFC 1122", "this network (0.0.0.0 reaches the local host)"},
	{pfx("10.0.0.0/8"), "RFC 1918", "private"},
	{pfx("100.64.0.0/10"), "RFC 6598", "shared address space (carrier-grade NAT)"},
	{pfx("127.0.0.0/8"), "RFC 1122", "loopback"},
	{pfx("169.254.0.0/16"), "RFC 3927", "link-local (cloud metadata services)"},
	{pfx("172.16.0.0/12"), "RFC 1918", "private"},
	{pfx("192.0.0.0/24"), "RFC 6890", "IETF protocol assignments"},
	{pfx("192.0.2.0/24"), "RFC 5737", "documentation (TEST-NET-1)"},
	{pfx("192.88.99.0/24"), "RFC 7526", "6to4 relay anycast (deprecated)"},
	{pfx("192.168.0.0/16"), "RFC 1918", "private"},
	{pfx("198.18.0.0/15"), "RFC 2544", "benchmarking"},
	{pfx("198.51.100.0/24"), "RFC 5737", "documentation (TEST-NET-2)"},
	{pfx("203.0.113.0/24"), "RFC 5737", "documentation (TEST-NET-3)"},
	{pfx("224.0.0.0/4"), "RFC 5771", "multicast"},
	{pfx("240.0.0.0/4"), "RFC 1112, RFC 919", "reserved, and the broadcast address 255.255.255.255"},
	{pfx("::/128"), "RFC 4291", "unspecified (reaches the local host)"},
	{pfx("::1/128"), "RFC 4291", "loopback"},
	{pfx("64:ff9b:1::/48"), "RFC 8215", "local-use IPv4/IPv6 translation"},
	{pfx("100::/64"), "RFC 6666", "discard-only"},
	{pfx("2001::/32"), "RFC 4380", "Teredo (tunnels to an IPv4 host)"},
	{pfx("2001:2::/48"), "RFC 5180", "benchmarking"},
	{pfx("2001:10::/28"), "RFC 4843", "ORCHID (deprecated)"},
	{pfx("2001:20::/28"), "RFC 7343", "ORCHIDv2"},
	{pfx("2001:db8::/32"), "RFC 3849", "documentation"},
	{pfx("3fff::/20"), "RFC 9637", "documentation"},
	{pfx("5f00::/16"), "RFC 9602", "SRv6 segment identifiers"},
	{pfx("fc00::/7"), "RFC 4193", "unique local (private)"},
	{pfx("fe80::/10"), "RFC 4291", "link-local"},
	{pfx("fec0::/10"), "RFC 3879", "site-local (deprecated, still routed inside some sites)"},
	{pfx("ff00::/8"), "RFC 4291", "multicast"},
}

// ipv4Embedding is a family of IPv6 addresses that carry an IPv4 address
// which a gateway, a tunnel or the host itself may deliver to. Such an
// address is judged by the IPv4 address it carries as well as by itself.
type ipv4Embedding struct {
	rfc, what string
	// match reports whether ip (IPv6) is of the family.
	match func(ip [16]byte) bool
	// at is the offset of the IPv4 address in the IPv6 address.
	at int
}

var ipv4Embeddings = []ipv4Embedding{
	{"RFC 4291", "IPv4-mapped ::ffff:0:0/96", prefixMatch("::ffff:0:0/96"), 12},
	{"RFC 4291", "IPv4-compatible ::/96 (deprecated), but for :: and ::1", isIPv4Compatible, 12},
	{"RFC 7915", "SIIT IPv4-translated ::ffff:0:0:0/96", prefixMatch("::ffff:0:0:0/96"), 12},
	{"RFC 6052", "NAT64 well-known prefix 64:ff9b::/96", prefixMatch("64:ff9b::/96"), 12},
	{"RFC 8215", "local-use NAT64 64:ff9b:1::/48, the IPv4 address in the last 32 bits", prefixMatch("64:ff9b:1::/48"), 12},
	{"RFC 3056", "6to4 2002::/16", prefixMatch("2002::/16"), 2},
	{"RFC 4380", "Teredo server 2001::/32", prefixMatch("2001::/32"), 4},
	{"RFC 5214", "ISATAP interface identifier ::0:5efe:a.b.c.d in any /64 (and ::200:5efe)", isISATAP, 12},
}

// The Teredo client's IPv4 address is stored inverted in the last 32 bits
// (RFC 4380, section 4): judged too, by teredoClient.
var teredoPrefix = pfx("2001::/32")

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func prefixMatch(s string) func([16]byte) bool {
	p := pfx(s)
	return func(b [16]byte) bool { return p.Contains(netip.AddrFrom16(b)) }
}

// isIPv4Compatible reports ::a.b.c.d, but for :: and ::1, which are
// addresses of their own.
func isIPv4Compatible(b [16]byte) bool {
	ip := netip.AddrFrom16(b)
	return compatPrefix.Contains(ip) && ip.Compare(netip.IPv6Loopback()) > 0
}

var compatPrefix = pfx("::/96")

// isISATAP reports an ISATAP interface identifier: 00-00-5E-FE, with the
// universal/local and group bits of the first byte free.
func isISATAP(b [16]byte) bool {
	return b[8]&^0x03 == 0 && b[9] == 0 && b[10] == 0x5e && b[11] == 0xfe
}

// EmbeddedIPv4 returns every IPv4 address that the IPv6 address ip
// carries by a convention of ipv4Embeddings (a Teredo address carries two:
// its server's and its client's). An IPv4 address carries none.
func EmbeddedIPv4(ip netip.Addr) []netip.Addr {
	if !ip.Is6() {
		return nil
	}
	b := ip.As16()
	var out []netip.Addr
	for _, e := range ipv4Embeddings {
		if e.match(b) {
			out = append(out, netip.AddrFrom4([4]byte(b[e.at:e.at+4])))
		}
	}
	if teredoPrefix.Contains(ip) {
		out = append(out, netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}))
	}
	return out
}

// defaultDenied returns the default-denied range holding ip, if any.
func defaultDenied(ip netip.Addr) (specialRange, bool) {
	for _, r := range defaultDeniedRanges {
		if r.prefix.Contains(ip) {
			return r, true
		}
	}
	return specialRange{}, false
}

// RangeTables renders the two tables as the Markdown SECURITY.md shows.
func RangeTables() string {
	var b strings.Builder
	b.WriteString("| range | reserved by | what it is |\n|---|---|---|\n")
	for _, r := range defaultDeniedRanges {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", r.prefix, r.rfc, r.what)
	}
	b.WriteString("\n| IPv6 form judged by the IPv4 address it carries | defined by |\n|---|---|\n")
	for _, e := range ipv4Embeddings {
		fmt.Fprintf(&b, "| %s | %s |\n", e.what, e.rfc)
	}
	b.WriteString("| Teredo client (the last 32 bits, inverted) | RFC 4380 |\n")
	return b.String()
}
