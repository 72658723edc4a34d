package gunshu

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Manager defaults.
const (
	DefaultTestTimeout       = 5 * time.Second
	DefaultPatrolInterval    = 30 * time.Second
	DefaultPatrolConcurrency = 32
)

// Manager keeps the list of live Services: it answers reg and list, and
// Patrol tests every service periodically. The zero value is ready to use
// with an in-memory registry.
type Manager struct {
	// Registry stores the services; nil means a MemoryRegistry.
	Registry Registry
	// Policy decides which addresses may register (and be tested).
	Policy Policy
	// DisableVerify skips the test of a registering address. By default
	// an address is listed only after it answered test with ok.
	DisableVerify bool
	// RequireSourceMatch lists an address only when its host is (or
	// resolves to) the IP address that sent reg; verification then tests
	// that address. It stops one machine from registering others.
	RequireSourceMatch bool
	// RegisterRate limits reg exchanges per source address (SourceKey);
	// the zero Rate allows all. An exchange over the rate gets fail
	// before anything is resolved or tested.
	RegisterRate Rate
	// SessionLimiter bounds the exchanges in flight; nil bounds none.
	SessionLimiter *SessionLimiter
	// TestTimeout bounds one test exchange.
	TestTimeout time.Duration
	// PatrolInterval is the time between patrol rounds.
	PatrolInterval time.Duration
	// MaxFailures is how many consecutive failed tests remove a service
	// (default 1, as in the original).
	MaxFailures int
	// PatrolConcurrency bounds the tests in flight during patrol.
	PatrolConcurrency int
	MessageLimits     MessageLimits
	Timeouts          Timeouts
	Rand              rand.Source
	Dialer            *net.Dialer
	Logger            *zap.Logger
	Observer          Observer
	// OnTest, when set, is called after each patrol test: for metrics.
	OnTest func(addr string, ok bool, latency time.Duration)
	// OnRegister, when set, is called after each registration attempt.
	OnRegister func(addr string, err error)

	once     sync.Once
	rnd      *random
	log      *zap.Logger
	obs      Observer
	regLimit rateLimiter
	// patrolRounds counts patrol rounds, for PatrolProbeEvery.
	patrolRounds atomic.Uint64
}

func (m *Manager) init() {
	m.once.Do(func() {
		if m.Registry == nil {
			m.Registry = &MemoryRegistry{}
		}
		if m.Dialer == nil {
			m.Dialer = &net.Dialer{}
		}
		m.rnd = newRandom(m.Rand)
		m.log = loggerOr(m.Logger)
		m.obs = observerOr(m.Observer)
	})
}

func (m *Manager) testTimeout() time.Duration { return orDefault(m.TestTimeout, DefaultTestTimeout) }

// ServeConn answers one reg or list exchange and closes conn.
func (m *Manager) ServeConn(conn net.Conn) error { return m.ServeBuffered(conn, nil) }

// ServeBuffered is ServeConn for a connection of which buffered were
// already read.
func (m *Manager) ServeBuffered(conn net.Conn, buffered []byte) error {
	m.init()
	start := time.Now()
	s := startSession(m.obs, RoleManager, conn, false)
	var err error
	if release, lerr := m.SessionLimiter.acquireConn(conn); lerr != nil {
		err = replyAndClose(conn, failLine, lerr)
	} else {
		err = m.serve(conn, buffered, &s, start)
		release()
	}
	s.finishExchange(m.obs, m.log, start, err)
	return err
}

func (m *Manager) serve(conn net.Conn, buffered []byte, s *Session, start time.Time) error {
	lr := newLineReader(conn, buffered, m.MessageLimits.maxLine())
	defer lr.release()
	_ = conn.SetDeadline(start.Add(m.Timeouts.command()))
	cmd, err := lr.readLine()
	if err != nil {
		return failOrClose(conn, fmt.Errorf("reading command: %w", err))
	}
	switch cmd {
	case CmdList:
		s.Command = CmdList
		return m.serveList(conn)
	case CmdReg:
		s.Command = CmdReg
		line, err := lr.readLine()
		if err != nil {
			return replyAndClose(conn, failLine, fmt.Errorf("reading reg address: %w", err))
		}
		if err := m.RegisterFrom(context.Background(), line, RemoteIP(conn.RemoteAddr())); err != nil {
			return replyAndClose(conn, failLine, err)
		}
		return replyAndClose(conn, okLine, nil)
	}
	return replyAndClose(conn, failLine, fmt.Errorf("%w %.40q", ErrUnknown, cmd))
}

func (m *Manager) serveList(conn net.Conn) error {
	defer conn.Close()
	addrs, err := m.Registry.Addrs(context.Background())
	if err != nil {
		// An unreadable registry is not an empty network: say fail.
		_, _ = conn.Write(failLine)
		return fmt.Errorf("reading registry: %w", err)
	}
	addrs = m.rnd.Sample(addrs, m.MessageLimits.maxList())
	size := 8
	for _, a := range addrs {
		size += len(a) + 1
	}
	if _, err := conn.Write(appendList(make([]byte, 0, size), addrs)); err != nil {
		return fmt.Errorf("writing list: %w", err)
	}
	return nil
}

// Register is RegisterFrom for a trusted caller (an admin endpoint, a
// test): no rate limit and no source match apply.
func (m *Manager) Register(ctx context.Context, line string) error {
	return m.RegisterFrom(ctx, line, netip.Addr{})
}

// Errors of registration.
var ErrSourceMismatch = errors.New("registered host is not the registering address")

// RegisterFrom handles a reg of line sent from source: it applies the rate
// limit, validates the address, checks it against the policy (resolving a
// name once), verifies that it answers test (unless disabled) at the
// checked addresses only, and adds or refreshes it in the registry,
// grouped by the address that answered.
func (m *Manager) RegisterFrom(ctx context.Context, line string, source netip.Addr) (err error) {
	m.init()
	if !m.regLimit.allow(m.RegisterRate, source, time.Now()) {
		return ErrRateLimited
	}
	addr, err := ParseAddr(line)
	if err != nil {
		return err
	}
	defer func() {
		if m.OnRegister != nil {
			m.OnRegister(addr, err)
		}
		if err != nil {
			m.log.Info("registration refused", zap.String("service", addr), zap.Error(err))
		}
	}()
	return m.list(ctx, addr, source)
}

// list adds or refreshes the valid address addr, sent from source (none
// for a trusted caller), in the registry: the policy, the source match and
// the verification decide.
func (m *Manager) list(ctx context.Context, addr string, source netip.Addr) error {
	targets, err := m.Policy.Resolve(ctx, addr)
	if err != nil {
		return err
	}
	if m.RequireSourceMatch && source.IsValid() {
		if targets = onlyIP(targets, source); len(targets) == 0 {
			return fmt.Errorf("%w: %s", ErrSourceMismatch, addr)
		}
	}
	answered := targets[0]
	if !m.DisableVerify {
		if answered, _, err = m.testTargets(ctx, targets, true); err != nil {
			return fmt.Errorf("verifying %s: %w", addr, err)
		}
	}
	group := SourceKey(answered.Addr()).String()
	if err := m.Registry.Register(ctx, addr, group, time.Now()); err != nil {
		return fmt.Errorf("registering %s: %w", addr, err)
	}
	m.log.Debug("registered", zap.String("service", addr))
	return nil
}

func onlyIP(targets []netip.AddrPort, ip netip.Addr) []netip.AddrPort {
	ip = ip.Unmap()
	var out []netip.AddrPort
	for _, t := range targets {
		if t.Addr() == ip {
			out = append(out, t)
		}
	}
	return out
}

// Test sends test to addr and waits for ok, within TestTimeout and the
// policy. It returns the round-trip latency.
func (m *Manager) Test(ctx context.Context, addr string) (time.Duration, error) {
	return m.test(ctx, addr, true)
}

// test is Test, with the responder probe only if probe is set.
func (m *Manager) test(ctx context.Context, addr string, probe bool) (time.Duration, error) {
	m.init()
	ctx, cancel := context.WithTimeout(ctx, m.testTimeout())
	defer cancel()
	targets, err := m.Policy.Resolve(ctx, addr)
	if err != nil {
		return 0, err
	}
	_, latency, err := m.testTargets(ctx, targets, probe)
	return latency, err
}

// testTargets tests the first of targets (already checked by the policy)
// that accepts a connection, within TestTimeout, and returns which one
// answered and the round-trip latency. With probe, the one that answered
// must then also show it is a relay and not a responder (probeRelay): a
// responder answers test with ok too, and listed as a relay it would end
// routes at its own site.
func (m *Manager) testTargets(ctx context.Context, targets []netip.AddrPort, probe bool) (netip.AddrPort, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, m.testTimeout())
	defer cancel()
	start := time.Now()
	conn, at, err := dialTargets(ctx, targets, m.Dialer)
	if err != nil {
		return at, 0, err
	}
	err = testExchange(ctx, conn, m.MessageLimits.maxLine())
	conn.Close()
	if err != nil {
		return at, 0, err
	}
	latency := time.Since(start)
	if !probe {
		return at, latency, nil
	}
	if err := probeRelay(ctx, m.Dialer, at.String(), m.MessageLimits.maxLine()); err != nil {
		return at, 0, err
	}
	return at, latency, nil
}

// Patrol tests every service each PatrolInterval until ctx ends.
func (m *Manager) Patrol(ctx context.Context) {
	m.init()
	t := time.NewTicker(orDefault(m.PatrolInterval, DefaultPatrolInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.PatrolOnce(ctx)
		}
	}
}

// PatrolProbeEvery is how often patrol also sends the responder probe: in
// every tenth round, the first included. Verification probes at every
// registration, and relays register every minute, so a listed responder
// is caught there; patrol's probe is for what got listed without
// verification, at a tenth of the connections.
const PatrolProbeEvery = 10

// PatrolOnce tests every registered service once, concurrently, and
// removes those that failed MaxFailures times in a row (a responder at
// once). With a Registry that is a PatrolClaimer it tests only the
// services it claims.
func (m *Manager) PatrolOnce(ctx context.Context) {
	m.init()
	probe := m.patrolRounds.Add(1)%PatrolProbeEvery == 1
	addrs, err := m.Registry.Addrs(ctx)
	if err != nil {
		m.log.Warn("patrol: reading registry", zap.Error(err))
		return
	}
	if c, ok := m.Registry.(PatrolClaimer); ok {
		// A shared registry: test only this manager's share.
		addrs, err = c.ClaimPatrol(ctx, addrs, orDefault(m.PatrolInterval, DefaultPatrolInterval))
		if err != nil {
			m.log.Warn("patrol: claiming services", zap.Error(err))
			return
		}
	}
	limit := m.PatrolConcurrency
	if limit <= 0 {
		limit = DefaultPatrolConcurrency
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for _, addr := range addrs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			m.patrolOne(ctx, addr, probe)
		}()
	}
	wg.Wait()
}

func (m *Manager) patrolOne(ctx context.Context, addr string, probe bool) {
	latency, err := m.test(ctx, addr, probe)
	if ctx.Err() != nil {
		return // shutting down: a cancelled test says nothing of addr
	}
	if m.OnTest != nil {
		m.OnTest(addr, err == nil, latency)
	}
	failures, rerr := m.Registry.RecordTest(ctx, addr, err == nil, latency, time.Now())
	if rerr != nil {
		m.log.Warn("patrol: recording test", zap.String("service", addr), zap.Error(rerr))
		return
	}
	maxFailures := m.MaxFailures
	if maxFailures <= 0 {
		maxFailures = 1
	}
	// A responder is no relay however often it answers: drop it at once.
	if err != nil && (failures >= maxFailures || errors.Is(err, ErrResponder)) {
		if removed, _ := m.Registry.Remove(ctx, addr); removed {
			m.log.Info("service removed", zap.String("service", addr), zap.Int("failures", failures), zap.Error(err))
		}
	}
}
