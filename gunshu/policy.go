package gunshu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
)

// ErrPolicyDenied is wrapped by every refusal of a Policy.
var ErrPolicyDenied = errors.New("denied by policy")

// Ranges a relay never dials and a manager never lists unless they are
// allowed explicitly: a relay must not become a way into its own network.
var defaultDeniedPrefixes = mustPrefixes(
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8",
	"169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4",
	"240.0.0.0/4", "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
)

// openPolicy dials anywhere: an initiator's first hop and a relay's
// manager are the operator's own choice, not a stranger's.
var openPolicy = &Policy{Allow: []string{"0.0.0.0/0", "::/0"}, DenyPorts: []uint16{}}

// DefaultDeniedPorts are ports a relay refuses to dial unless allowed.
var DefaultDeniedPorts = []uint16{25}

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// Policy decides where a relay may connect and which addresses a manager
// accepts. The zero value denies the default ranges and ports and allows
// everything else.
type Policy struct {
	// Allow lists prefixes and host names that are allowed even when a
	// default range denies them. A host name "example.net" matches itself;
	// ".example.net" matches its subdomains.
	Allow []string
	// Deny lists prefixes and host names denied in addition to the default
	// ranges. Deny wins over Allow.
	Deny []string
	// DenyPorts replaces DefaultDeniedPorts when non-nil.
	DenyPorts []uint16
	// Resolver resolves host names; nil means net.DefaultResolver.
	Resolver *net.Resolver

	once                  sync.Once
	compileErr            error
	allowNets, denyNets   []netip.Prefix
	allowHosts, denyHosts []string
}

// Compile parses Allow and Deny, once; later changes to them are ignored.
// The first use calls it; call it early to report a bad entry.
func (p *Policy) Compile() error {
	p.once.Do(func() {
		var err error
		if p.allowNets, p.allowHosts, err = splitRules(p.Allow); err != nil {
			p.compileErr = fmt.Errorf("allow: %w", err)
			return
		}
		if p.denyNets, p.denyHosts, p.compileErr = splitRules(p.Deny); p.compileErr != nil {
			p.compileErr = fmt.Errorf("deny: %w", p.compileErr)
		}
	})
	return p.compileErr
}

func splitRules(rules []string) (nets []netip.Prefix, hosts []string, err error) {
	for _, r := range rules {
		r = strings.TrimSpace(r)
		switch {
		case strings.Contains(r, "/"):
			pfx, perr := netip.ParsePrefix(r)
			if perr != nil {
				return nil, nil, fmt.Errorf("bad CIDR %q: %v", r, perr)
			}
			nets = append(nets, pfx.Masked())
		case r == "":
			return nil, nil, errors.New("empty rule")
		default:
			if ip, perr := netip.ParseAddr(r); perr == nil {
				nets = append(nets, netip.PrefixFrom(ip, ip.BitLen()))
				continue
			}
			if !isDNSName(strings.TrimPrefix(r, ".")) {
				return nil, nil, fmt.Errorf("bad host name or address %q", r)
			}
			hosts = append(hosts, strings.ToLower(r))
		}
	}
	return nets, hosts, nil
}

// AllowIP reports whether ip may be dialed.
func (p *Policy) AllowIP(ip netip.Addr) error {
	if err := p.Compile(); err != nil {
		return err
	}
	ip = ip.Unmap().WithZone("")
	if v4, ok := embeddedIPv4(ip); ok {
		// A NAT64 or 6to4 gateway would carry the dial to v4: judge v4 too.
		if err := p.AllowIP(v4); err != nil {
			return fmt.Errorf("%w (embedded in %s)", err, ip)
		}
	}
	if containsIP(p.denyNets, ip) {
		return fmt.Errorf("%w: %s is in a denied range", ErrPolicyDenied, ip)
	}
	if containsIP(p.allowNets, ip) {
		return nil
	}
	if containsIP(defaultDeniedPrefixes, ip) {
		return fmt.Errorf("%w: %s is in a default-denied range (loopback, private, link-local, multicast or reserved)", ErrPolicyDenied, ip)
	}
	return nil
}

// Prefixes of IPv6 addresses that carry an IPv4 address a gateway
// forwards to: the NAT64 well-known prefix (RFC 6052) and 6to4 (RFC 3056).
var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// embeddedIPv4 returns the IPv4 address that ip (IPv6) carries by NAT64 or
// 6to4 convention.
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() {
		return netip.Addr{}, false
	}
	b := ip.As16()
	switch {
	case nat64Prefix.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

func containsIP(nets []netip.Prefix, ip netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

func matchHost(rules []string, host string) bool {
	for _, r := range rules {
		if r == host || strings.HasPrefix(r, ".") && strings.HasSuffix(host, r) {
			return true
		}
	}
	return false
}

func (p *Policy) allowPort(port uint16) error {
	denied := DefaultDeniedPorts
	if p.DenyPorts != nil {
		denied = p.DenyPorts
	}
	for _, d := range denied {
		if d == port {
			return fmt.Errorf("%w: port %d", ErrPolicyDenied, port)
		}
	}
	return nil
}

// Resolve checks addr (as ParseAddr returns it) and returns the IP
// addresses it may be dialed at. A name is resolved once and every address
// it resolves to must pass: the caller then dials the checked IP, so DNS
// cannot answer differently between check and dial.
func (p *Policy) Resolve(ctx context.Context, addr string) ([]netip.AddrPort, error) {
	if err := p.Compile(); err != nil {
		return nil, err
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrBadAddress, addr)
	}
	port64, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port64 == 0 {
		return nil, fmt.Errorf("%w: bad port in %q", ErrBadAddress, addr)
	}
	port := uint16(port64)
	if err := p.allowPort(port); err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if err := p.AllowIP(ip); err != nil {
			return nil, err
		}
		return []netip.AddrPort{netip.AddrPortFrom(ip.Unmap(), port)}, nil
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if matchHost(p.denyHosts, host) {
		return nil, fmt.Errorf("%w: host %s", ErrPolicyDenied, host)
	}
	resolver := p.Resolver
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	ips, err := resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", host, err)
	}
	hostAllowed := matchHost(p.allowHosts, host)
	out := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		ip = ip.Unmap().WithZone("")
		if containsIP(p.denyNets, ip) {
			return nil, fmt.Errorf("%w: %s resolves to %s, in a denied range", ErrPolicyDenied, host, ip)
		}
		if !hostAllowed {
			if err := p.AllowIP(ip); err != nil {
				return nil, fmt.Errorf("%s resolves to %w", host, err)
			}
		}
		out = append(out, netip.AddrPortFrom(ip, port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("resolving %s: no addresses", host)
	}
	return out, nil
}

// Dial connects to addr within timeout after checking it. It tries the
// checked addresses in order.
func (p *Policy) Dial(ctx context.Context, addr string, d *net.Dialer) (net.Conn, error) {
	targets, err := p.Resolve(ctx, addr)
	if err != nil {
		return nil, err
	}
	conn, _, err := dialTargets(ctx, targets, d)
	return conn, err
}

// dialTargets connects to the first of targets that accepts, in order, and
// returns which one it was.
func dialTargets(ctx context.Context, targets []netip.AddrPort, d *net.Dialer) (net.Conn, netip.AddrPort, error) {
	var firstErr error
	for _, t := range targets {
		conn, err := d.DialContext(ctx, "tcp", t.String())
		if err == nil {
			return conn, t, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	if firstErr == nil {
		firstErr = errors.New("no address to dial")
	}
	return nil, netip.AddrPort{}, firstErr
}
