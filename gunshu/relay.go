package gunshu

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
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
		err = replyAndClose(conn, failLine, lerr)
	} else {
		id := r.sessions.add(conn)
		err = r.serve(conn, buffered, &s, start)
		r.sessions.remove(id)
		release()
	}
	s.finish(r.obs, r.log, start, err)
	return err
}

func (r *Relay) serve(up net.Conn, buffered []byte, s *Session, start time.Time) error {
	lr := newLineReader(up, buffered, r.MessageLimits.maxLine())
	defer func() {
		if lr.buf != nil {
			lr.release()
		}
	}()
	_ = up.SetReadDeadline(start.Add(r.Timeouts.command()))
	cmd, err := lr.readLine()
	if err != nil {
		return failOrClose(up, fmt.Errorf("reading command: %w", err))
	}
	switch cmd {
	case CmdTest:
		s.Command = CmdTest
		return replyAndClose(up, okLine, nil)
	case CmdEst:
		s.Command = CmdEst
	default:
		return replyAndClose(up, failLine, fmt.Errorf("%w %.40q", ErrUnknown, cmd))
	}
	list, err := lr.readList(r.MessageLimits.maxList())
	if err == nil {
		err = r.checkList(list, up)
	}
	if err != nil {
		return replyAndClose(up, failLine, fmt.Errorf("reading est: %w", err))
	}
	down, downRest, err := r.extendAside(list)
	if err != nil {
		return replyAndClose(up, failLine, err)
	}
	if _, err := up.Write(okLine); err != nil {
		forward.Abort(down)
		up.Close()
		return fmt.Errorf("answering ok: %w", err)
	}
	_ = up.SetReadDeadline(time.Now().Add(r.Timeouts.command()))
	if err := lr.expectLine(CmdForward); err != nil {
		forward.Abort(down)
		forward.Abort(up)
		return fmt.Errorf("waiting for forward: %w", err)
	}
	_ = up.SetReadDeadline(time.Time{})
	// forward and whatever followed it leave in one segment.
	first := append(forwardLine[:len(forwardLine):len(forwardLine)], lr.release()...)
	if _, err := down.Write(first); err != nil {
		forward.Abort(down)
		forward.Abort(up)
		return errNextHop{fmt.Errorf("sending forward: %w", err)}
	}
	s.Handshake = time.Since(start)
	// The handshake in detail, for an operator debugging: how many
	// entries the list had, never which.
	r.log.Debug("route extended", zap.Int("list_entries", len(list)), zap.Duration("handshake", s.Handshake))
	s.Bytes, err = forward.Copy(up, down, nil, downRest, r.IdleTimeout)
	s.Bytes.Up += int64(len(first) - len(forwardLine))
	return err
}

// extend picks the next hop at random, connects to it and asks it to
// establish the rest of the route. It returns the connection and any bytes
// read past the next hop's ok.
func (r *Relay) extend(list []string) (net.Conn, []byte, error) {
	next, rest := nextHop(r.rnd, list)
	return establish(context.Background(), r.Dialer, &r.Policy, next, rest, r.Timeouts, r.MessageLimits)
}

// nextHop picks a relay's successor uniformly from the list it received,
// and returns it with the list the successor is sent.
func nextHop(rnd *random, list []string) (string, []string) {
	i := rnd.IntN(len(list))
	rest := make([]string, 0, len(list)-1)
	rest = append(append(rest, list[:i]...), list[i+1:]...)
	return list[i], rest
}

// establish dials next through policy, sends est with list and waits for
// ok. It is the one place where a route is extended, for relays and
// initiators alike.
func establish(ctx context.Context, d *net.Dialer, policy *Policy, next string, list []string, t Timeouts, l MessageLimits) (net.Conn, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, t.route())
	defer cancel()
	deadline, _ := ctx.Deadline()
	dialCtx, cancelDial := context.WithTimeout(ctx, t.dial())
	down, err := policy.Dial(dialCtx, next, d)
	cancelDial()
	if err != nil {
		if errors.Is(err, ErrPolicyDenied) {
			return nil, nil, err
		}
		return nil, nil, errDial{err}
	}
	_ = down.SetDeadline(deadline)
	// The caller giving up must end the wait for ok as well.
	stop := context.AfterFunc(ctx, func() { _ = down.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := down.Write(estMessage(list)); err != nil {
		forward.Abort(down)
		return nil, nil, errNextHop{fmt.Errorf("sending est: %w", err)}
	}
	dlr := newLineReader(down, nil, l.maxLine())
	err = dlr.expectLine(ReplyOK)
	rest := dlr.release()
	if err != nil {
		down.Close()
		return nil, nil, errNextHop{fmt.Errorf("waiting for ok: %w", err)}
	}
	if !stop() {
		down.Close()
		return nil, nil, errNextHop{ctx.Err()}
	}
	_ = down.SetDeadline(time.Time{})
	return down, rest, nil
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
