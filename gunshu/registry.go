package gunshu

import (
	"context"
	"errors"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Errors a Registry returns for registrations it refuses.
var (
	ErrRegistryFull = errors.New("registry full")
	ErrGroupFull    = errors.New("too many services on one IP address")
	ErrNetworkFull  = errors.New("too many services in one network")
)

// ServiceRecord is what a registry knows of one registered Service (relay).
type ServiceRecord struct {
	Addr string `json:"address"`
	// FirstSeen and LastSeen are the first and the latest registration.
	FirstSeen time.Time `json:"first_registered"`
	LastSeen  time.Time `json:"last_registered"`
	// LastTest is when patrol last tested the service; zero if never.
	LastTest    time.Time     `json:"last_test,omitempty"`
	LastTestOK  bool          `json:"last_test_ok"`
	LastLatency time.Duration `json:"last_test_latency,omitempty"`
	// Failures counts consecutive failed tests.
	Failures int `json:"consecutive_failures"`
	// Group is the network the service was verified at (see Registry).
	Group string `json:"group,omitempty"`
}

// Registry stores the services of a manager. Implementations must be safe
// for concurrent use; a shared one (Redis, say) lets several managers serve
// one list. Caps (size, services per IP address) are the registry's to
// enforce, atomically within Register.
type Registry interface {
	// Register adds addr or refreshes it. It never creates a duplicate.
	// group is the key of the per-IP cap, chosen by the Manager: the
	// network the service answered its verification from (an IPv4
	// address as /32, an IPv6 /64), so many names for one machine count
	// as one machine. The per-network cap counts the wider network
	// NetworkOf(group). A refresh whose group changed is counted in the
	// new group, and refused (and the entry dropped) when that is full.
	Register(ctx context.Context, addr, group string, now time.Time) error
	// Addrs returns the registered addresses, in any order.
	Addrs(ctx context.Context) ([]string, error)
	// Services returns everything known of every service.
	Services(ctx context.Context) ([]ServiceRecord, error)
	// RecordTest stores a patrol result and returns the consecutive
	// failures now counted for addr (0 after a success). An address no
	// longer registered is ignored.
	RecordTest(ctx context.Context, addr string, ok bool, latency time.Duration, now time.Time) (int, error)
	// Remove drops addr and reports whether it was registered.
	Remove(ctx context.Context, addr string) (bool, error)
}

// PatrolClaimer is implemented by a Registry that several managers share.
// Before a patrol round, PatrolOnce asks it which of the registered
// addresses this manager should test now; the others are left to the
// other managers. However it shares them out (leases, sharding among the
// live managers), each service should be tested about once per interval
// in all, and the share of a manager that stops should pass to the others
// within about one interval. On error PatrolOnce skips the round.
type PatrolClaimer interface {
	ClaimPatrol(ctx context.Context, addrs []string, interval time.Duration) ([]string, error)
}

// DefaultMaxPerIP is the cap on services per IP address that the Caddy
// manager applies unless configured: two, as Tor allows per address.
const DefaultMaxPerIP = 2

// DefaultMaxPerNetwork is the cap on services per network (NetworkOf)
// that the Caddy manager applies unless configured: one holder of a /24
// or an IPv6 /48 lists at most eight relays, not hundreds.
const DefaultMaxPerNetwork = 8

// NetworkOf is the network a group (a prefix, as Manager makes it) belongs
// to for the per-network cap: the IPv4 /24 or the IPv6 /48 around it. A
// group that is not a prefix has no network ("", false).
func NetworkOf(group string) (string, bool) {
	p, err := netip.ParsePrefix(group)
	if err != nil {
		return "", false
	}
	bits := 48
	if p.Addr().Is4() {
		bits = 24
	}
	if p.Bits() < bits {
		return p.Masked().String(), true
	}
	n, _ := p.Addr().Prefix(bits)
	return n.String(), true
}

// MemoryRegistry is a Registry in this process's memory.
type MemoryRegistry struct {
	// MaxServices caps the list; 0 means no cap.
	MaxServices int
	// MaxPerIP caps the services of one group (see Registry.Register);
	// 0 means no cap.
	MaxPerIP int
	// MaxPerNetwork caps the services of one network (see NetworkOf); 0
	// means no cap.
	MaxPerNetwork int

	mu       sync.RWMutex
	services map[string]*ServiceRecord
	perGroup map[string]int
	perNet   map[string]int
}

// NewMemoryRegistry returns an empty registry with the given caps.
func NewMemoryRegistry(maxServices, maxPerIP int) *MemoryRegistry {
	return &MemoryRegistry{MaxServices: maxServices, MaxPerIP: maxPerIP}
}

// SetLimits changes the caps of a registry in use; services already
// registered are kept even when they exceed a lowered cap.
func (m *MemoryRegistry) SetLimits(maxServices, maxPerIP int) {
	m.mu.Lock()
	m.MaxServices, m.MaxPerIP = maxServices, maxPerIP
	m.mu.Unlock()
}

// SetMaxPerNetwork changes the per-network cap of a registry in use, as
// SetLimits does the others.
func (m *MemoryRegistry) SetMaxPerNetwork(n int) {
	m.mu.Lock()
	m.MaxPerNetwork = n
	m.mu.Unlock()
}

// Register implements Registry.
func (m *MemoryRegistry) Register(_ context.Context, addr, group string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, known := m.services[addr]
	if known && s.Group == group {
		s.LastSeen = now
		return nil
	}
	if known { // moved: count it in its new group, or not at all
		m.dropLocked(s)
	}
	if !known && m.MaxServices > 0 && len(m.services) >= m.MaxServices {
		return ErrRegistryFull
	}
	if m.MaxPerIP > 0 && m.perGroup[group] >= m.MaxPerIP {
		return ErrGroupFull
	}
	network, hasNet := NetworkOf(group)
	if hasNet && m.MaxPerNetwork > 0 && m.perNet[network] >= m.MaxPerNetwork {
		return ErrNetworkFull
	}
	if m.services == nil {
		m.services = make(map[string]*ServiceRecord)
		m.perGroup = make(map[string]int)
		m.perNet = make(map[string]int)
	}
	if !known {
		s = &ServiceRecord{Addr: addr, FirstSeen: now}
	}
	s.LastSeen, s.Group = now, group
	m.services[addr] = s
	m.perGroup[group]++
	if hasNet {
		m.perNet[network]++
	}
	return nil
}

func (m *MemoryRegistry) dropLocked(s *ServiceRecord) {
	delete(m.services, s.Addr)
	if m.perGroup[s.Group]--; m.perGroup[s.Group] <= 0 {
		delete(m.perGroup, s.Group)
	}
	if network, ok := NetworkOf(s.Group); ok {
		if m.perNet[network]--; m.perNet[network] <= 0 {
			delete(m.perNet, network)
		}
	}
}

// Addrs implements Registry.
func (m *MemoryRegistry) Addrs(context.Context) ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.services))
	for a := range m.services {
		out = append(out, a)
	}
	return out, nil
}

// Services implements Registry; the result is sorted by address.
func (m *MemoryRegistry) Services(context.Context) ([]ServiceRecord, error) {
	m.mu.RLock()
	out := make([]ServiceRecord, 0, len(m.services))
	for _, s := range m.services {
		out = append(out, *s)
	}
	m.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out, nil
}

// RecordTest implements Registry.
func (m *MemoryRegistry) RecordTest(_ context.Context, addr string, ok bool, latency time.Duration, now time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, found := m.services[addr]
	if !found {
		return 0, nil
	}
	s.LastTest, s.LastTestOK, s.LastLatency = now, ok, latency
	if ok {
		s.Failures = 0
	} else {
		s.Failures++
	}
	return s.Failures, nil
}

// Remove implements Registry.
func (m *MemoryRegistry) Remove(_ context.Context, addr string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.services[addr]
	if !ok {
		return false, nil
	}
	m.dropLocked(s)
	return true, nil
}
