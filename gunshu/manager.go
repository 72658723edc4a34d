package gunshu

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
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
	// TestTimeout bounds one test exchange.
	TestTimeout time.Duration
	// PatrolInterval is the time between patrol rounds.
	PatrolInterval time.Duration
	// MaxFailures is how many consecutive failed tests remove a service
	// (default 1, as in the original).
	MaxFailures int
	// PatrolConcurrency bounds the tests in flight during patrol.
	PatrolConcurrency int
	Limits            Limits
	Timeouts          Timeouts
	Rand              rand.Source
	Dialer            *net.Dialer
	Logger            *zap.Logger
	Observer          Observer
	// OnTest, when set, is called after each patrol test: for metrics.
	OnTest func(addr string, ok bool, latency time.Duration)
	// OnRegister, when set, is called after each registration attempt.
	OnRegister func(addr string, err error)

	once sync.Once
	rnd  *random
	log  *zap.Logger
	obs  Observer
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
	m.obs.SessionStarted(RoleManager)
	s := Session{Role: RoleManager}
	err := m.serve(conn, buffered, &s, start)
	s.Duration = time.Since(start)
	s.Handshake = s.Duration
	s.Outcome, s.Err = classify(err), err
	m.obs.SessionEnded(s)
	if err != nil {
		// The error may name the peer: an initiator asking for the list.
		m.log.Debug("exchange failed", zap.String("command", s.Command), zap.String("error", redactedError(err)))
	}
	return err
}

func (m *Manager) serve(conn net.Conn, buffered []byte, s *Session, start time.Time) error {
	lr := newLineReader(conn, buffered, m.Limits.maxLine())
	defer lr.release()
	_ = conn.SetDeadline(start.Add(m.Timeouts.command()))
	cmd, err := lr.readLine()
	if err != nil {
		conn.Close()
		return fmt.Errorf("reading command: %w", err)
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
		if err := m.Register(context.Background(), line); err != nil {
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
	m.rnd.Shuffle(addrs)
	if limit := m.Limits.maxList(); len(addrs) > limit {
		addrs = addrs[:limit]
	}
	size := 8
	for _, a := range addrs {
		size += len(a) + 1
	}
	if _, err := conn.Write(appendList(make([]byte, 0, size), addrs)); err != nil {
		return fmt.Errorf("writing list: %w", err)
	}
	return nil
}

// Register validates addr, checks it against the policy, verifies it
// answers test (unless disabled) and adds or refreshes it.
func (m *Manager) Register(ctx context.Context, line string) (err error) {
	m.init()
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
	if _, err := m.Policy.Resolve(ctx, addr); err != nil {
		return err
	}
	if !m.DisableVerify {
		if _, err := m.Test(ctx, addr); err != nil {
			return fmt.Errorf("verifying %s: %w", addr, err)
		}
	}
	if err := m.Registry.Register(ctx, addr, time.Now()); err != nil {
		return fmt.Errorf("registering %s: %w", addr, err)
	}
	m.log.Debug("registered", zap.String("service", addr))
	return nil
}

// Test sends test to addr and waits for ok, within TestTimeout and the
// policy. It returns the round-trip latency.
func (m *Manager) Test(ctx context.Context, addr string) (time.Duration, error) {
	m.init()
	ctx, cancel := context.WithTimeout(ctx, m.testTimeout())
	defer cancel()
	start := time.Now()
	conn, err := m.Policy.Dial(ctx, addr, m.Dialer)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(testLine); err != nil {
		return 0, fmt.Errorf("sending test: %w", err)
	}
	lr := newLineReader(conn, nil, m.Limits.maxLine())
	defer lr.release()
	if err := lr.expectLine(ReplyOK); err != nil {
		return 0, fmt.Errorf("waiting for ok: %w", err)
	}
	return time.Since(start), nil
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

// PatrolOnce tests every registered service once, concurrently, and
// removes those that failed MaxFailures times in a row.
func (m *Manager) PatrolOnce(ctx context.Context) {
	m.init()
	addrs, err := m.Registry.Addrs(ctx)
	if err != nil {
		m.log.Warn("patrol: reading registry", zap.Error(err))
		return
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
			m.patrolOne(ctx, addr)
		}()
	}
	wg.Wait()
}

func (m *Manager) patrolOne(ctx context.Context, addr string) {
	latency, err := m.Test(ctx, addr)
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
	if err != nil && failures >= maxFailures {
		if removed, _ := m.Registry.Remove(ctx, addr); removed {
			m.log.Info("service removed", zap.String("service", addr), zap.Int("failures", failures), zap.Error(err))
		}
	}
}
