package gunshu

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Serve accepts connections on ln and serves each in its own goroutine
// until ln is closed; it then waits for the connections in hand.
func (r *Relay) Serve(ln net.Listener) error {
	return acceptLoop(ln, func(c net.Conn) { _ = r.ServeConn(c) })
}

// Serve accepts connections on ln and answers each in its own goroutine
// until ln is closed; it then waits for the exchanges in flight.
func (m *Manager) Serve(ln net.Listener) error {
	return acceptLoop(ln, func(c net.Conn) { _ = m.ServeConn(c) })
}

func acceptLoop(ln net.Listener, handle func(net.Conn)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ln = KeepAccepting(ln, AcceptHooks{})
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			handle(conn)
		}()
	}
}

// AcceptHooks tell the owner of a listener that KeepAccepting wraps when
// accepting pauses and when it resumes: for its log and metrics.
type AcceptHooks struct {
	// Paused is called with the error that began a pause.
	Paused func(err error)
	// Resumed is called when a pause ends, with how long it lasted: when
	// an Accept after it takes a connection or waits for one (has not
	// failed within acceptSettled), or when the listener is closed during
	// it (closed is then true).
	Resumed func(pausedFor time.Duration, closed bool)
}

// KeepAccepting wraps ln so that its Accept waits out the errors that
// pass (passingAcceptError, waiting as acceptPause says) instead of
// returning them: a server at its
// open-file limit must take connections again as soon as sessions end,
// not stop for good. Close ends a pause at once. Accept returns every
// other error as ln gives it.
func KeepAccepting(ln net.Listener, hooks AcceptHooks) net.Listener {
	return &keepAccepting{Listener: ln, hooks: hooks, closed: make(chan struct{})}
}

type keepAccepting struct {
	net.Listener
	hooks     AcceptHooks
	closed    chan struct{}
	closeOnce sync.Once
	pausing   atomic.Bool
	mu        sync.Mutex
	pause     acceptPause
}

// acceptSettled is how long an Accept during a pause must go without an
// error for the pause to be over. Out of descriptors, accept fails at
// once whether or not a client waits; an Accept that blocks this long is
// waiting for a client, so the listener works again although no
// connection came to show it (the pause would otherwise last, in the log
// and the metrics, until the next client).
const acceptSettled = 100 * time.Millisecond

func (l *keepAccepting) Accept() (net.Conn, error) {
	for {
		conn, err := l.accept()
		if err == nil {
			if l.pausing.Load() {
				l.endPause(time.Time{}, time.Now(), false)
			}
			return conn, nil
		}
		if !passingAcceptError(err) {
			return nil, err
		}
		t := time.NewTimer(l.wait(err))
		select {
		case <-t.C:
		case <-l.closed:
			t.Stop()
			return nil, &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: net.ErrClosed}
		}
	}
}

// accept is one Accept of the wrapped listener; during a pause, one that
// has not failed within acceptSettled ends the pause as of its start.
func (l *keepAccepting) accept() (net.Conn, error) {
	if !l.pausing.Load() {
		return l.Listener.Accept()
	}
	l.mu.Lock()
	since := l.pause.since
	l.mu.Unlock()
	began := time.Now()
	settled := time.AfterFunc(acceptSettled, func() { l.endPause(since, began, false) })
	defer settled.Stop()
	return l.Listener.Accept()
}

// wait records a passing error and returns how long to wait before the
// next Accept; the first error of a pause calls the Paused hook.
func (l *keepAccepting) wait(err error) time.Duration {
	l.mu.Lock()
	first := l.pause.since.IsZero()
	d := l.pause.next(time.Now())
	l.pausing.Store(true)
	l.mu.Unlock()
	if first && l.hooks.Paused != nil {
		l.hooks.Paused(err)
	}
	return d
}

// endPause ends, as of at, the pause that began at since (or whichever
// is on, for a zero since), once: a pause that ended already, or a newer
// one, is left alone.
func (l *keepAccepting) endPause(since, at time.Time, closed bool) {
	l.mu.Lock()
	began := l.pause.since
	if began.IsZero() || !since.IsZero() && !began.Equal(since) {
		l.mu.Unlock()
		return
	}
	l.pause = acceptPause{}
	l.pausing.Store(false)
	l.mu.Unlock()
	if l.hooks.Resumed != nil {
		l.hooks.Resumed(at.Sub(began), closed)
	}
}

func (l *keepAccepting) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.endPause(time.Time{}, time.Now(), true)
	})
	return l.Listener.Close()
}

// passingAcceptError reports whether accepting can go on after err: a
// timeout, an aborted handshake, or running out of descriptors, buffers
// or memory. It is the project's one rule for accept errors.
func passingAcceptError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || shortOfResources(err) || errors.Is(err, syscall.ECONNABORTED)
}

// shortOfResources reports an error of this process running out of
// descriptors (its own or the system's), buffers or memory: it passes
// as sessions end.
func shortOfResources(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// acceptPause is the wait between Accepts while errors pass, and between
// dials while resources are short: it doubles from 5 ms to 1 s, so a
// server whose descriptors come back takes connections again within a
// second.
type acceptPause struct {
	delay time.Duration
	since time.Time // when the errors began
}

func (p *acceptPause) next(now time.Time) time.Duration {
	if p.since.IsZero() {
		p.since = now
	}
	p.delay = min(max(2*p.delay, 5*time.Millisecond), time.Second)
	return p.delay
}
