package gunshu

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu/forward"
)

// Default time limits from PROTOCOL.md.
const (
	DefaultCommandTimeout = 10 * time.Second
	DefaultDialTimeout    = 5 * time.Second
	DefaultRouteTimeout   = 30 * time.Second
)

// Errors of route establishment.
var (
	ErrEmptyList = errors.New("empty list")
	ErrBadList   = errors.New("unacceptable list")
)

// errDial marks a failure to connect to the next hop.
type errDial struct{ err error }

func (e errDial) Error() string { return "dialing next hop: " + e.err.Error() }
func (e errDial) Unwrap() error { return e.err }

// errNextHop marks a failure of the next hop after it was reached.
type errNextHop struct{ err error }

func (e errNextHop) Error() string { return "next hop: " + e.err.Error() }
func (e errNextHop) Unwrap() error { return e.err }

// Timeouts bound every wait of a handshake. Zero fields take the defaults.
type Timeouts struct {
	// Command bounds reading a whole request (the command line and its
	// arguments), and the wait for forward after ok.
	Command time.Duration
	// Dial bounds connecting to the next hop.
	Dial time.Duration
	// Route bounds the wait for the rest of the route to answer est.
	Route time.Duration
}

func (t Timeouts) command() time.Duration { return orDefault(t.Command, DefaultCommandTimeout) }
func (t Timeouts) dial() time.Duration    { return orDefault(t.Dial, DefaultDialTimeout) }
func (t Timeouts) route() time.Duration   { return orDefault(t.Route, DefaultRouteTimeout) }

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Relay is a Gunshu Service: it answers test, extends routes on est and
// then forwards bytes. Configure it before the first ServeConn; the zero
// value is ready to use with the defaults.
type Relay struct {
	// Policy decides which next hops may be dialed.
	Policy        Policy
	MessageLimits MessageLimits
	// Timeouts bound the handshake; forwarding itself has no deadline
	// unless IdleTimeout is set.
	Timeouts Timeouts
	// IdleTimeout ends a forwarding session (with a reset on every hop)
	// after this long without a byte in either direction; 0 never does.
	IdleTimeout time.Duration
	// SessionLimiter bounds the sessions held at once; nil bounds none.
	SessionLimiter *SessionLimiter
	// WaitForOK makes the relay behave as a 2003 one: it passes nothing
	// of upstream's past est on until its next hop answered ok. By
	// default it passes upstream's bytes at once (cut-through, at most
	// MaxUnconfirmed before ok), which saves a round trip per hop.
	WaitForOK bool
	// Self are the relay's own advertised addresses. A list naming this
	// relay is refused, so a route cannot loop back through it: under
	// one of these, or on one of its ports (these, and those it was
	// reached at) under any address of this machine, an IPv6 form
	// carrying one, or a name resolving to one.
	Self []string
	// Rand picks next hops; nil means a cryptographically secure source.
	Rand rand.Source
	// Dialer sets local address and keep-alive for next hops.
	Dialer *net.Dialer
	// Logger gets one line per finished session; nil logs nothing.
	Logger *zap.Logger
	// LogAddresses adds the predecessor's address to session logs. Off by
	// default: relays log no user-identifying data.
	LogAddresses bool
	Observer     Observer

	once     sync.Once
	rnd      *random
	log      *zap.Logger
	obs      Observer
	sessions sessionSet
	busy     atomic.Int32 // exchanges served beyond the session limits
	self     selfKnowledge
}

func (r *Relay) init() {
	r.once.Do(func() {
		r.Policy.refuse, r.Policy.dialed = r.refuseSelf, r.self.dialed
		r.rnd = newRandom(r.Rand)
		r.log = loggerOr(r.Logger)
		r.obs = observerOr(r.Observer)
		if r.Dialer == nil {
			r.Dialer = &net.Dialer{}
		}
	})
}

// ServeConn serves one connection accepted by the relay and closes it.
func (r *Relay) ServeConn(conn net.Conn) error {
	return r.ServeBuffered(conn, nil)
}

// ServeBuffered is ServeConn for a connection of which buffered were
// already read (by a protocol matcher, say); they are taken as the first
// bytes of the stream.
func (r *Relay) ServeBuffered(conn net.Conn, buffered []byte) error {
	r.init()
	start := time.Now()
	s := startSession(r.obs, RoleRelay, conn, r.LogAddresses)
	var err error
	if release, lerr := r.SessionLimiter.acquireConn(conn); lerr != nil {
		err = r.serveBusy(conn, buffered, &s, lerr)
	} else {
		id := r.sessions.add(conn)
		var h *hop
		if h, err = r.serve(conn, buffered, &s, start); h != nil {
			// serve's frame is gone: the session's long life in
			// forward keeps a small stack.
			err = h.forward()
			s.Handshake, s.Bytes = h.handshake, h.bytes
		}
		r.sessions.remove(id)
		release()
	}
	s.finish(r.obs, r.log, start, err)
	return err
}

// Bounds of the exchanges a relay answers beyond its session limits.
const (
	// maxBusyExchanges bounds the connections over the limits whose
	// first line is being read at once; more get fail at once.
	maxBusyExchanges = 64
	// busyCommandTimeout bounds reading that line.
	busyCommandTimeout = 2 * time.Second
)

// serveBusy answers a connection refused by the session limits: test
// still gets ok, so a manager's patrol keeps a busy relay listed; est and
// everything else get fail, and the initiator tries elsewhere. These
// exchanges have a bound of their own (maxBusyExchanges at once, each
// read within busyCommandTimeout), so they cannot be what fills a relay.
func (r *Relay) serveBusy(conn net.Conn, buffered []byte, s *Session, limited error) error {
	if r.busy.Add(1) > maxBusyExchanges {
		r.busy.Add(-1)
		return replyAndClose(conn, failLine, limited)
	}
	defer r.busy.Add(-1)
	lr := newLineReader(conn, buffered, r.MessageLimits.maxLine())
	defer lr.drop()
	_ = conn.SetReadDeadline(time.Now().Add(min(r.Timeouts.command(), busyCommandTimeout)))
	cmd, err := lr.readLine()
	if err == nil && cmd == CmdTest {
		s.Command = CmdTest
		return replyAndClose(conn, okLine, nil)
	}
	if cmd == CmdEst {
		s.Command = CmdEst
	}
	return replyAndClose(conn, failLine, limited)
}

// serve reads est and opens the route; it returns the hop once the
// route is established, or why it is not.
func (r *Relay) serve(up net.Conn, buffered []byte, s *Session, start time.Time) (*hop, error) {
	lr := newLineReader(up, buffered, r.MessageLimits.maxLine())
	h := &hop{relay: r, up: up, lr: lr}
	defer func() {
		if h.down == nil { // the hop never took the reader over
			lr.drop()
		}
	}()
	_ = up.SetReadDeadline(start.Add(r.Timeouts.command()))
	list, err := readEst(up, lr, s, r.MessageLimits.maxList(), func(list []string) error { return r.checkList(list, up) })
	if errors.Is(err, ErrTestAnswered) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// A pipelining upstream's forward is checked before anything is
	// dialed; a later one on its way (hop.pump).
	fwdLen := 0
	if !r.WaitForOK && lr.hasLine() {
		if fwdLen, err = checkForward(lr); err != nil {
			return nil, replyAndClose(up, failLine, err)
		}
	}
	next, rest := nextHop(r.rnd, list)
	deadline := time.Now().Add(r.Timeouts.route())
	if h.down, err = r.dialAside(next, deadline); err != nil {
		return nil, replyAndClose(up, failLine, err)
	}
	if err := h.open(estMessage(rest), fwdLen, start, deadline, len(list)); err != nil {
		return nil, err
	}
	return h, nil
}

// dialAside runs dial on a short-lived goroutine of its own. Dialing
// needs a deep stack; grown on the session's goroutine, that stack would
// stay with the session for as long as the route lives, because the GC
// shrinks a parked goroutine's stack only while at most a quarter of it
// is in use. Measured with bench/ (BenchmarkIdleSessions), this cuts an
// idle relayed session from about 12.6 KiB of heap and stacks to 9.3.
func (r *Relay) dialAside(next string, deadline time.Time) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1) // buffered: the goroutine never blocks
	go func() {
		conn, err := r.dial(next, deadline)
		done <- result{conn, err}
	}()
	res := <-done
	return res.conn, res.err
}

// dial connects to next through the relay's policy within the dial
// timeout and the route's deadline.
func (r *Relay) dial(next string, deadline time.Time) (net.Conn, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	ctx, cancelDial := context.WithTimeout(ctx, r.Timeouts.dial())
	defer cancelDial()
	down, err := r.Policy.Dial(ctx, next, r.Dialer)
	if err != nil && !errors.Is(err, ErrPolicyDenied) {
		err = errDial{err}
	}
	return down, err
}

// nextHop picks a relay's successor uniformly from the list it received,
// and returns it with the list the successor is sent.
func nextHop(rnd *random, list []string) (string, []string) {
	i := rnd.IntN(len(list))
	rest := make([]string, 0, len(list)-1)
	rest = append(append(rest, list[:i]...), list[i+1:]...)
	return list[i], rest
}

// failOrClose ends a connection whose first line could not be read: a
// malformed line gets fail, as a reply is due; a peer that went away or
// timed out gets nothing.
func failOrClose(conn net.Conn, err error) error {
	if classify(err) == OutcomeBadInput {
		return replyAndClose(conn, failLine, err)
	}
	conn.Close()
	return err
}

// replyAndClose sends a one-line reply, closes conn and returns err.
// readEst reads what opens a route at a relay or a responder: the command
// and, for est, its list, which check (if not nil) may refuse. It answers
// test with ok and returns ErrTestAnswered; a command other than est, a
// bad list or a refused one get fail. On an error conn is closed.
func readEst(conn net.Conn, lr *lineReader, s *Session, maxList int, check func([]string) error) ([]string, error) {
	cmd, err := lr.readLine()
	if err != nil {
		return nil, failOrClose(conn, fmt.Errorf("reading command: %w", err))
	}
	switch cmd {
	case CmdTest:
		s.Command = CmdTest
		return nil, replyAndClose(conn, okLine, ErrTestAnswered)
	case CmdEst:
		s.Command = CmdEst
	default:
		return nil, replyAndClose(conn, failLine, fmt.Errorf("%w %.40q", ErrUnknown, cmd))
	}
	list, err := lr.readList(maxList)
	if err == nil && check != nil {
		err = check(list)
	}
	if err != nil {
		return nil, replyAndClose(conn, failLine, fmt.Errorf("reading est: %w", err))
	}
	return list, nil
}

func replyAndClose(conn net.Conn, reply []byte, err error) error {
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = conn.Write(reply)
	conn.Close()
	return err
}

// Active is the number of connections the relay is serving.
func (r *Relay) Active() int { return r.sessions.len() }

// Close ends every session of the relay with a reset, so every hop of the
// routes through it ends too. The relay can serve again afterwards.
func (r *Relay) Close() error {
	r.sessions.abortAll()
	return nil
}

// sessionSet tracks live connections so a shutdown can end them.
type sessionSet struct {
	mu    sync.Mutex
	next  uint64
	conns map[uint64]net.Conn
}

func (ss *sessionSet) add(c net.Conn) uint64 {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.conns == nil {
		ss.conns = make(map[uint64]net.Conn)
	}
	ss.next++
	ss.conns[ss.next] = c
	return ss.next
}

func (ss *sessionSet) remove(id uint64) {
	ss.mu.Lock()
	delete(ss.conns, id)
	ss.mu.Unlock()
}

func (ss *sessionSet) len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.conns)
}

func (ss *sessionSet) abortAll() {
	ss.mu.Lock()
	conns := make([]net.Conn, 0, len(ss.conns))
	for _, c := range ss.conns {
		conns = append(conns, c)
	}
	ss.mu.Unlock()
	for _, c := range conns {
		forward.Abort(c)
	}
}
