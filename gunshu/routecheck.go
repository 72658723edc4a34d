package gunshu

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"
)

// DefaultMaxHops bounds the entries of an est list a relay accepts unless
// its Limits.MaxList says otherwise. An entrance offers at most
// DefaultMaxRelays relays, so the list its first hop receives has at most
// that many entries (the other relays and the responder). A longer list is
// a 2003 initiator offering its whole list, or an attacker: every relay on
// a route holds two sockets for as long as the route lives, so a list is
// a request for that many sockets.
const DefaultMaxHops = DefaultMaxRelays

// ErrSelf reports a list that names the relay reading it, under any
// spelling: the route would come back through it, and each pass holds two
// more of its sockets.
var ErrSelf = fmt.Errorf("%w: names this relay", ErrBadList)

// maxHops is the longest est list the relay accepts.
func (r *Relay) maxHops() int {
	if r.MessageLimits.MaxList > 0 {
		return r.MessageLimits.MaxList
	}
	return DefaultMaxHops
}

// checkList refuses an est list the relay must not extend, read on conn:
// an empty one, one longer than its hop bound, one with duplicates, one
// that names this relay under any spelling (see names), and one that
// arrives on a connection this relay dialed itself (whatever spelling got
// it there). conn's local address is the port and address this relay was
// reached at, whatever its configuration says.
func (r *Relay) checkList(list []string, conn net.Conn) error {
	if len(list) == 0 {
		return ErrEmptyList
	}
	if max := r.maxHops(); len(list) > max {
		return fmt.Errorf("%w: %d entries, more than the %d hops this relay accepts", ErrBadList, len(list), max)
	}
	if len(list) <= 64 {
		for i := range list {
			for j := i + 1; j < len(list); j++ {
				if list[i] == list[j] {
					return fmt.Errorf("%w: duplicate entry", ErrBadList)
				}
			}
		}
	} else {
		seen := make(map[string]struct{}, len(list))
		for _, a := range list {
			if _, dup := seen[a]; dup {
				return fmt.Errorf("%w: duplicate entry", ErrBadList)
			}
			seen[a] = struct{}{}
		}
	}
	r.self.learn(conn.LocalAddr())
	if r.self.dialedBySelf(conn) {
		return ErrSelf
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.Timeouts.dial())
	defer cancel()
	if r.names(ctx, list) {
		return ErrSelf
	}
	return nil
}

// names reports whether an entry of list reaches this relay: one of its
// advertised addresses, or on one of its ports (advertised, or that it was
// reached at) an address that is its own (see isOwnIP) or a name that
// resolves to one. Names on other ports are not resolved: a spelling of
// this relay needs its port.
func (r *Relay) names(ctx context.Context, list []string) bool {
	var names []string
	for _, a := range list {
		if slices.Contains(r.Self, a) {
			return true
		}
		host, port, ok := splitAddr(a)
		if !ok || !r.self.isOwnPort(r.Self, port) {
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			if r.self.isOwnIP(ctx, r.resolver(), r.Self, ip) {
				return true
			}
			continue
		}
		names = append(names, host)
	}
	if len(names) == 0 {
		return false
	}
	// Resolved at once, each within ctx: a list of names costs one lookup
	// time, not one per name.
	found := make(chan bool, len(names))
	for _, name := range names {
		go func() {
			own := false
			for _, ip := range r.self.lookup(ctx, r.resolver(), name) {
				own = own || r.self.isOwnIP(ctx, r.resolver(), r.Self, ip)
			}
			found <- own
		}()
	}
	own := false
	for range names {
		own = <-found || own
	}
	return own
}

// refuseSelf is the relay's addition to its dial policy: a next hop whose
// checked address is this relay is refused, however its name resolved
// when the list was checked.
func (r *Relay) refuseSelf(ctx context.Context, ap netip.AddrPort) error {
	if r.self.isOwnPort(r.Self, ap.Port()) && r.self.isOwnIP(ctx, r.resolver(), r.Self, ap.Addr()) {
		return fmt.Errorf("%w: the next hop is this relay (%w)", ErrPolicyDenied, ErrSelf)
	}
	return nil
}

func (r *Relay) resolver() *net.Resolver {
	if r.Policy.Resolver != nil {
		return r.Policy.Resolver
	}
	return net.DefaultResolver
}

// splitAddr splits a canonical address (ParseAddr's form) into its host
// and port.
func splitAddr(addr string) (string, uint16, bool) {
	ap, err := netip.ParseAddrPort(addr)
	if err == nil {
		return ap.Addr().String(), ap.Port(), true
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, false
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return "", 0, false
	}
	return host, uint16(port), true
}

// Bounds of what a relay remembers of itself.
const (
	maxLearned    = 64
	maxNames      = 1024
	maxDials      = 4096
	nameTTL       = 30 * time.Second
	interfacesTTL = 10 * time.Second
)

// selfKnowledge is what a relay knows of the addresses that reach it:
// the local ports and addresses its connections were accepted at, this
// machine's interface addresses, a short-lived cache of names looked up
// while checking lists, and the source addresses of its latest dials.
type selfKnowledge struct {
	mu           sync.Mutex
	ports        map[uint16]struct{}
	ips          map[netip.Addr]struct{}
	loopbacks    int // distinct loopback addresses among ips
	interfaces   []netip.Addr
	interfacesAt time.Time
	names        map[string]cachedName
	// dials holds the two ends of the last maxDials connections to next
	// hops, in a ring: a connection accepted with the same two ends is
	// this relay talking to itself.
	dials    map[dialEnds]struct{}
	dialRing []dialEnds
	dialNext int
}

// dialEnds are the source and the destination of a connection.
type dialEnds struct{ from, to netip.AddrPort }

// endsOf returns the two ends of a connection, seen from the side that
// dialed it: its local and remote address, or for an accepted one
// (accepted true) its remote and local address.
func endsOf(conn net.Conn, accepted bool) (dialEnds, bool) {
	local, err1 := netip.ParseAddrPort(addrString(conn.LocalAddr()))
	remote, err2 := netip.ParseAddrPort(addrString(conn.RemoteAddr()))
	if err1 != nil || err2 != nil {
		return dialEnds{}, false
	}
	local = netip.AddrPortFrom(local.Addr().Unmap().WithZone(""), local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap().WithZone(""), remote.Port())
	if accepted {
		return dialEnds{from: remote, to: local}, true
	}
	return dialEnds{from: local, to: remote}, true
}

type cachedName struct {
	ips   []netip.Addr
	until time.Time
}

// learn remembers the local port and address of an accepted connection.
func (s *selfKnowledge) learn(local net.Addr) {
	ap, err := netip.ParseAddrPort(addrString(local))
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ports == nil {
		s.ports = make(map[uint16]struct{})
		s.ips = make(map[netip.Addr]struct{})
	}
	if len(s.ports) < maxLearned {
		s.ports[ap.Port()] = struct{}{}
	}
	ip := ap.Addr().Unmap().WithZone("")
	if _, known := s.ips[ip]; !known && len(s.ips) < maxLearned {
		s.ips[ip] = struct{}{}
		if ip.IsLoopback() {
			s.loopbacks++
		}
	}
}

// dialed remembers the two ends of a connection the relay opened.
func (s *selfKnowledge) dialed(conn net.Conn) {
	ends, ok := endsOf(conn, false)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dials == nil {
		s.dials = make(map[dialEnds]struct{}, maxDials)
		s.dialRing = make([]dialEnds, maxDials)
	}
	if old := s.dialRing[s.dialNext]; old.from.IsValid() {
		delete(s.dials, old)
	}
	s.dialRing[s.dialNext] = ends
	s.dialNext = (s.dialNext + 1) % maxDials
	s.dials[ends] = struct{}{}
}

// dialedBySelf reports whether the accepted conn is one of the relay's
// latest dials: the same source and destination.
func (s *selfKnowledge) dialedBySelf(conn net.Conn) bool {
	ends, ok := endsOf(conn, true)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok = s.dials[ends]
	return ok
}

// isOwnPort reports whether port is one this relay was reached at or
// advertises.
func (s *selfKnowledge) isOwnPort(advertised []string, port uint16) bool {
	for _, a := range advertised {
		if _, p, ok := splitAddr(a); ok && p == port {
			return true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ports[port]
	return ok
}

// isOwnIP reports whether ip, or an IPv4 address it carries (see
// EmbeddedIPv4), is this relay's: an unspecified address (connecting to it
// reaches the local host), an address a connection was accepted at, an
// address of this machine's interfaces, or an advertised one (names among
// those are looked up through resolver unless it is nil).
func (s *selfKnowledge) isOwnIP(ctx context.Context, resolver *net.Resolver, advertised []string, ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	for _, c := range append([]netip.Addr{ip}, EmbeddedIPv4(ip)...) {
		if c.IsUnspecified() || s.isLocal(c) {
			return true
		}
		for _, a := range advertised {
			host, _, ok := splitAddr(a)
			if !ok {
				continue
			}
			if own, err := netip.ParseAddr(host); err == nil {
				if own.Unmap() == c {
					return true
				}
			} else if resolver != nil && slices.Contains(s.lookup(ctx, resolver, host), c) {
				return true
			}
		}
	}
	return false
}

// isLocal reports whether ip was seen as a local address of an accepted
// connection or is one of this machine's interface addresses. A relay
// reached at two loopback addresses listens on them all (a wildcard
// listener: Linux answers for the whole of 127.0.0.0/8), so then every
// loopback address is its own.
func (s *selfKnowledge) isLocal(ip netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ips[ip]; ok {
		return true
	}
	if ip.IsLoopback() && s.loopbacks >= 2 {
		return true
	}
	if time.Since(s.interfacesAt) > interfacesTTL {
		s.interfaces, s.interfacesAt = interfaceIPs(), time.Now()
	}
	return slices.Contains(s.interfaces, ip)
}

// interfaceIPs lists the addresses of this machine's interfaces.
func interfaceIPs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if ipnet, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipnet.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// lookup resolves name within ctx, through a cache of nameTTL that holds
// failures too (as no addresses), so a list of names costs the relay one
// lookup each per TTL at most.
func (s *selfKnowledge) lookup(ctx context.Context, resolver *net.Resolver, name string) []netip.Addr {
	now := time.Now()
	s.mu.Lock()
	c, ok := s.names[name]
	s.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.ips
	}
	ips, _ := resolver.LookupNetIP(ctx, "ip", name)
	for i, ip := range ips {
		ips[i] = ip.Unmap().WithZone("")
	}
	if ctx.Err() != nil {
		return ips // cut short: not a fact worth caching
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.names == nil {
		s.names = make(map[string]cachedName)
	}
	if len(s.names) >= maxNames {
		for k, v := range s.names {
			if now.After(v.until) || len(s.names) >= maxNames {
				delete(s.names, k)
			}
		}
	}
	s.names[name] = cachedName{ips: ips, until: now.Add(nameTTL)}
	return ips
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
