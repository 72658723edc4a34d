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
	"time"
)

// ErrPolicyDenied is wrapped by every refusal of a Policy.
var ErrPolicyDenied = errors.New("denied by policy")

// openPolicy dials anywhere: an initiator's first hop and a relay's
// manager are the operator's own choice, not a stranger's.
var openPolicy = &Policy{Allow: []string{"0.0.0.0/0", "::/0"}, DenyPorts: []uint16{}}

// DefaultDeniedPorts are ports a relay refuses to dial unless allowed.
var DefaultDeniedPorts = []uint16{25}

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

	// refuse, when set, may refuse a checked address after the rules
	// passed it: a relay refuses itself as a next hop.
	refuse func(context.Context, netip.AddrPort) error
	// dialed, when set, learns of every connection Dial opened, before
	// anything is sent on it: a relay remembers where it dialed from.
	dialed func(net.Conn)

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

// AllowIP reports whether ip may be dialed. An IPv6 address that carries
// an IPv4 address (see EmbeddedIPv4) must pass with that address too: a
// NAT64 gateway, a tunnel or the host itself may deliver it there.
func (p *Policy) AllowIP(ip netip.Addr) error {
	if err := p.Compile(); err != nil {
		return err
	}
	ip = ip.Unmap().WithZone("")
	for _, v4 := range EmbeddedIPv4(ip) {
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
	if r, ok := defaultDenied(ip); ok {
		return fmt.Errorf("%w: %s is in %s, %s (default-denied)", ErrPolicyDenied, ip, r.prefix, r.what)
	}
	return nil
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
		return p.refused(ctx, []netip.AddrPort{netip.AddrPortFrom(ip.Unmap(), port)})
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	// Messages name the host with its port, so RedactText finds it.
	if matchHost(p.denyHosts, host) {
		return nil, fmt.Errorf("%w: host %s", ErrPolicyDenied, addr)
	}
	resolver := p.Resolver
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	ips, err := resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", addr, err)
	}
	hostAllowed := matchHost(p.allowHosts, host)
	out := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		ip = ip.Unmap().WithZone("")
		if containsIP(p.denyNets, ip) {
			return nil, fmt.Errorf("%w: %s resolves to %s, in a denied range", ErrPolicyDenied, addr, ip)
		}
		if !hostAllowed {
			if err := p.AllowIP(ip); err != nil {
				return nil, fmt.Errorf("%s resolves to %w", addr, err)
			}
		}
		out = append(out, netip.AddrPortFrom(ip, port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("resolving %s: no addresses", addr)
	}
	return p.refused(ctx, out)
}

// refused applies the refuse hook to every target.
func (p *Policy) refused(ctx context.Context, targets []netip.AddrPort) ([]netip.AddrPort, error) {
	if p.refuse != nil {
		for _, t := range targets {
			if err := p.refuse(ctx, t); err != nil {
				return nil, err
			}
		}
	}
	return targets, nil
}

// Dial connects to addr within timeout after checking it. It tries the
// checked addresses in order.
func (p *Policy) Dial(ctx context.Context, addr string, d *net.Dialer) (net.Conn, error) {
	targets, err := p.Resolve(ctx, addr)
	if err != nil {
		return nil, err
	}
	conn, _, err := dialTargets(ctx, targets, d)
	if err == nil && p.dialed != nil {
		p.dialed(conn)
	}
	return conn, err
}

// dialTargets connects to the first of targets that accepts, in order, and
// returns which one it was.
func dialTargets(ctx context.Context, targets []netip.AddrPort, d *net.Dialer) (net.Conn, netip.AddrPort, error) {
	var firstErr error
	for _, t := range targets {
		conn, err := dialRidingOut(ctx, d, t.String())
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

// dialRidingOut dials target and, while the dial fails for want of this
// process's own resources (see shortOfResources), dials again after a
// wait that doubles from 5 ms, within ctx. A server coming back from its
// open-file limit gets descriptors back one session at a time: a route
// must not fail, and spend its initiator's attempts, on a dial made in
// that moment (seen in e2e: an entrance accepted its client as soon as
// one descriptor was free, and its three attempts failed within a
// millisecond).
func dialRidingOut(ctx context.Context, d *net.Dialer, target string) (net.Conn, error) {
	var wait acceptPause
	for {
		conn, err := d.DialContext(ctx, "tcp", target)
		if err == nil || !shortOfResources(err) {
			return conn, err
		}
		t := time.NewTimer(wait.next(time.Now()))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
	}
}
