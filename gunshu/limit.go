package gunshu

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Errors of the connection bounds. They name no address: a refused peer is
// counted, not written down.
var (
	ErrTooManySessions = errors.New("too many sessions")
	ErrTooManyFromIP   = errors.New("too many sessions from one address")
	ErrRateLimited     = errors.New("too many registrations from one address")
)

// SourceKey is the network a peer's limits are counted for: an IPv4
// address itself, and the /64 of an IPv6 address, since one subscriber
// usually holds a whole /64.
func SourceKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// RemoteIP is the IP address of a connection's peer, or the zero Addr
// when it has none (a pipe, a unix socket).
func RemoteIP(addr net.Addr) netip.Addr {
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// SessionLimiter bounds the sessions a server holds at once, in all and per
// source address. One SessionLimiter may be shared by several servers (and kept
// across a config reload) so their sessions count together. The peer's
// address is only a map key: it is never logged and is forgotten when its
// last session ends. The zero value limits nothing.
type SessionLimiter struct {
	// MaxSessions caps the sessions held at once; 0 means no cap.
	MaxSessions int
	// MaxPerIP caps the sessions of one source (see SourceKey); 0 means
	// no cap.
	MaxPerIP int

	mu     sync.Mutex
	total  int
	perSrc map[netip.Prefix]int
}

// Acquire counts a new session from ip, or refuses it with
// ErrTooManySessions or ErrTooManyFromIP. Every successful Acquire must be
// paired with one Release of the same ip. An invalid ip (no IP peer) is
// counted in the total only.
func (l *SessionLimiter) Acquire(ip netip.Addr) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.MaxSessions > 0 && l.total >= l.MaxSessions {
		return ErrTooManySessions
	}
	if ip.IsValid() && l.MaxPerIP > 0 {
		key := SourceKey(ip)
		if l.perSrc[key] >= l.MaxPerIP {
			return ErrTooManyFromIP
		}
		if l.perSrc == nil {
			l.perSrc = make(map[netip.Prefix]int)
		}
		l.perSrc[key]++
	}
	l.total++
	return nil
}

// Release ends a session counted by Acquire.
func (l *SessionLimiter) Release(ip netip.Addr) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if ip.IsValid() && l.MaxPerIP > 0 {
		key := SourceKey(ip)
		if l.perSrc[key]--; l.perSrc[key] <= 0 {
			delete(l.perSrc, key)
		}
	}
}

// Sessions is the number of sessions counted now.
func (l *SessionLimiter) Sessions() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// acquireConn counts conn's session and returns its release, or refuses
// it.
func (l *SessionLimiter) acquireConn(conn net.Conn) (func(), error) {
	if l == nil {
		return func() {}, nil
	}
	ip := RemoteIP(conn.RemoteAddr())
	if err := l.Acquire(ip); err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { l.Release(ip) }) }, nil
}

// Rate is a token bucket: Burst events at once, then one per Every. The
// zero value (Every 0) allows everything.
type Rate struct {
	Every time.Duration
	Burst int
}

// DefaultRegisterRate is the registration rate the Caddy manager allows
// one source unless configured: six at once, then one every ten seconds.
// A relay registers once a minute, so this leaves room for a few relays
// behind one address, and holds one source to a few verification dials a
// minute however fast it sends reg.
var DefaultRegisterRate = Rate{Every: 10 * time.Second, Burst: 6}

// maxRateSources bounds the sources a rateLimiter remembers.
const maxRateSources = 16384

// rateLimiter applies a Rate per source, in bounded memory: a source whose
// bucket has refilled is as good as forgotten, so it is dropped first when
// the table is full, and then the longest-unseen source.
type rateLimiter struct {
	mu      sync.Mutex
	buckets map[netip.Prefix]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func (rl *rateLimiter) allow(rate Rate, ip netip.Addr, now time.Time) bool {
	if rate.Every <= 0 || !ip.IsValid() {
		return true
	}
	burst := float64(max(rate.Burst, 1))
	key := SourceKey(ip)
	rl.mu.Lock()
	defer rl.mu.Unlock()
	b, ok := rl.buckets[key]
	if !ok {
		if rl.buckets == nil {
			rl.buckets = make(map[netip.Prefix]*bucket)
		}
		if len(rl.buckets) >= maxRateSources {
			rl.evict(rate, burst, now)
		}
		b = &bucket{tokens: burst, last: now}
		rl.buckets[key] = b
	}
	b.tokens = min(burst, b.tokens+float64(now.Sub(b.last))/float64(rate.Every))
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// evict makes room: it drops every refilled bucket, or failing that the
// one seen longest ago.
func (rl *rateLimiter) evict(rate Rate, burst float64, now time.Time) {
	var oldestKey netip.Prefix
	var oldest time.Time
	for k, b := range rl.buckets {
		if b.tokens+float64(now.Sub(b.last))/float64(rate.Every) >= burst {
			delete(rl.buckets, k)
			continue
		}
		if oldest.IsZero() || b.last.Before(oldest) {
			oldestKey, oldest = k, b.last
		}
	}
	if len(rl.buckets) >= maxRateSources {
		delete(rl.buckets, oldestKey)
	}
}

func (rl *rateLimiter) len() int {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return len(rl.buckets)
}
