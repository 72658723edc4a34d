package gunshu

import (
	"context"
	"errors"
	"net"
	"sort"
	"sync"
	"time"
)

// Errors a Registry returns for registrations it refuses.
var (
	ErrRegistryFull = errors.New("registry full")
	ErrHostFull     = errors.New("too many services on one host")
)

// Service is what a registry knows of one registered Service.
type Service struct {
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
}

// Registry stores the services of a manager. Implementations must be safe
// for concurrent use; a shared one (Redis, say) lets several managers serve
// one list. Caps (size, services per host) are the registry's to enforce,
// atomically.
type Registry interface {
	// Register adds addr or refreshes it. It never creates a duplicate.
	Register(ctx context.Context, addr string, now time.Time) error
	// Addrs returns the registered addresses, in any order.
	Addrs(ctx context.Context) ([]string, error)
	// Services returns everything known of every service.
	Services(ctx context.Context) ([]Service, error)
	// RecordTest stores a patrol result and returns the consecutive
	// failures now counted for addr (0 after a success). An address no
	// longer registered is ignored.
	RecordTest(ctx context.Context, addr string, ok bool, latency time.Duration, now time.Time) (int, error)
	// Remove drops addr and reports whether it was registered.
	Remove(ctx context.Context, addr string) (bool, error)
}

// MemoryRegistry is a Registry in this process's memory.
type MemoryRegistry struct {
	// MaxServices caps the list; 0 means no cap.
	MaxServices int
	// MaxPerHost caps services sharing one host (IP or name); 0 means no cap.
	MaxPerHost int

	mu       sync.RWMutex
	services map[string]*Service
	perHost  map[string]int
}

// NewMemoryRegistry returns an empty registry with the given caps.
func NewMemoryRegistry(maxServices, maxPerHost int) *MemoryRegistry {
	return &MemoryRegistry{MaxServices: maxServices, MaxPerHost: maxPerHost}
}

func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// Register implements Registry.
func (m *MemoryRegistry) Register(_ context.Context, addr string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.services[addr]; ok {
		s.LastSeen = now
		return nil
	}
	if m.MaxServices > 0 && len(m.services) >= m.MaxServices {
		return ErrRegistryFull
	}
	host := hostOf(addr)
	if m.MaxPerHost > 0 && m.perHost[host] >= m.MaxPerHost {
		return ErrHostFull
	}
	if m.services == nil {
		m.services = make(map[string]*Service)
		m.perHost = make(map[string]int)
	}
	m.services[addr] = &Service{Addr: addr, FirstSeen: now, LastSeen: now}
	m.perHost[host]++
	return nil
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
func (m *MemoryRegistry) Services(context.Context) ([]Service, error) {
	m.mu.RLock()
	out := make([]Service, 0, len(m.services))
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
	if _, ok := m.services[addr]; !ok {
		return false, nil
	}
	delete(m.services, addr)
	host := hostOf(addr)
	if m.perHost[host]--; m.perHost[host] <= 0 {
		delete(m.perHost, host)
	}
	return true, nil
}
