package gunshu

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu/forward"
)

// Entrance carries each connection it serves through a fresh Gunshu route
// to a responder: it is how clients that know nothing of Gunshu use the
// network. With a fixed Responder every connection goes there as it is;
// without one the Entrance is a proxy: it reads a SOCKS5 or HTTP proxy
// request (CONNECT, or a plain request in absolute form) and takes the
// responder from it.
type Entrance struct {
	// Dialer builds the routes.
	Dialer *Dialer
	// Responder is the fixed target of every route; empty makes the
	// Entrance a SOCKS5 and HTTP proxy.
	Responder string
	// IdleTimeout ends a session after this long without a byte in
	// either direction; 0 never does.
	IdleTimeout time.Duration
	// SessionLimiter bounds the client connections served at once; nil bounds
	// none.
	SessionLimiter *SessionLimiter
	// Username and Password, when either is set, are required of proxy
	// clients: SOCKS5 username/password (RFC 1929) or HTTP Basic
	// Proxy-Authorization. They need an empty Responder.
	Username, Password string
	// HandshakeTimeout bounds reading a proxy request and each answer to
	// it; 0 means DefaultCommandTimeout. Building the route has the
	// Dialer's own bounds.
	HandshakeTimeout time.Duration
	// EarlyReply answers a SOCKS5 or HTTP CONNECT client's request with
	// success at once, before the route's ok: a client that waits for the
	// answer before it sends (curl, browsers) then gets its first byte a
	// whole route round trip sooner, but a route that cannot be built
	// ends with a reset instead of an error reply. Off by default: the
	// answer waits for ok, and clients that send right behind their
	// request (Tor Browser's optimistic data) lose nothing by it.
	EarlyReply bool
	// MaxSilent bounds the routes a fixed-responder entrance holds at
	// once for clients that have not sent a byte yet. While a place is
	// free, and clients have not been leaving without a byte faster than
	// one a second (beyond a burst of MaxSilent), a route starts at the
	// client's accept, so its first bytes leave as soon as they come.
	// Otherwise the entrance waits SilentWait for the client's first
	// bytes, then for a place until HandshakeTimeout, then resets the
	// client. 0 means DefaultMaxSilent.
	MaxSilent int
	// SilentWait is how long a fixed-responder entrance that cannot start
	// a route at once waits for the client's first bytes before it asks
	// for a place anyway (for protocols whose server speaks first: SMTP,
	// IMAP, FTP); 0 means DefaultSilentWait.
	SilentWait time.Duration
	// Logger gets one line per finished session; nil logs nothing.
	Logger *zap.Logger
	// LogAddresses adds the client's address to session logs.
	LogAddresses bool
	Observer     Observer

	once    sync.Once
	log     *zap.Logger
	obs     Observer
	creds   *credentials
	silent  chan struct{} // a place per route held for a silent client
	silence silenceBudget
}

// Defaults of an Entrance's bounds on clients that have sent nothing.
const (
	DefaultSilentWait = 500 * time.Millisecond
	DefaultMaxSilent  = 16
)

// ErrSilentClients refuses a client that sent nothing while MaxSilent
// others are in the same state.
var ErrSilentClients = errors.New("too many clients that sent nothing")

func (e *Entrance) init() {
	e.once.Do(func() {
		e.log = loggerOr(e.Logger)
		e.obs = observerOr(e.Observer)
		e.creds = newCredentials(e.Username, e.Password)
		e.silent = make(chan struct{}, cmp.Or(max(e.MaxSilent, 0), DefaultMaxSilent))
		e.silence.burst = float64(cap(e.silent))
	})
}

// Validate reports a configuration that cannot work.
func (e *Entrance) Validate() error {
	if e.Dialer == nil {
		return errors.New("entrance has no dialer")
	}
	if e.Responder != "" {
		if _, err := ParseAddr(e.Responder); err != nil {
			return fmt.Errorf("responder: %w", err)
		}
		if e.Username != "" || e.Password != "" {
			return errors.New("username and password need proxy mode (no fixed responder): a fixed-target entrance passes bytes as they are and has no place to ask for them")
		}
	}
	return nil
}

// ServeConn serves one client connection and closes it.
func (e *Entrance) ServeConn(conn net.Conn) error { return e.ServeBuffered(conn, nil) }

// ServeBuffered is ServeConn for a connection of which buffered were
// already read; they are sent first.
func (e *Entrance) ServeBuffered(conn net.Conn, buffered []byte) error {
	e.init()
	start := time.Now()
	s := startSession(e.obs, RoleInitiator, conn, e.LogAddresses)
	s.Command = CmdEst
	var err error
	if release, lerr := e.SessionLimiter.acquireConn(conn); lerr != nil {
		forward.Abort(conn)
		err = lerr
	} else {
		err = e.serve(conn, buffered, &s, start)
		release()
	}
	s.finish(e.obs, e.log, start, err)
	return err
}

func (e *Entrance) serve(conn net.Conn, buffered []byte, s *Session, start time.Time) error {
	if e.Responder == "" {
		return e.serveProxy(conn, buffered, s, start)
	}
	var proven func()
	if len(buffered) == 0 {
		if release, ok := e.speculate(); ok {
			// The route starts at once, as if the first bytes were
			// already here: on a real link they come a moment later.
			defer release()
			err := e.carry(conn, e.Responder, nil, nil, release, s, start)
			if s.Bytes.Up > 0 {
				e.silence.refund() // not wasted: the client spoke
			}
			e.logRoute(s)
			return err
		}
		first, err := e.awaitFirstBytes(conn)
		switch {
		case len(first) > 0:
			buffered = first
		case isTimeout(err):
			release, err := e.holdSilent(start)
			if err != nil {
				forward.Abort(conn)
				return err
			}
			defer release()
			proven = release
		default: // gone before a byte: nothing was spent on it
			conn.Close()
			return fmt.Errorf("waiting for the client's first bytes: %w", err)
		}
	}
	err := e.carry(conn, e.Responder, buffered, nil, proven, s, start)
	e.logRoute(s)
	return err
}

func (e *Entrance) logRoute(s *Session) {
	if s.Handshake > 0 {
		e.log.Debug("route established", zap.Duration("handshake", s.Handshake))
	}
}

// speculate takes a place for a route built before the client's first
// byte, when one is free and routes so built have not been wasted (their
// client left without a byte) faster than silenceBudget allows. Each
// takes a token, given back when the client speaks. release gives the
// place back, once.
func (e *Entrance) speculate() (release func(), ok bool) {
	select {
	case e.silent <- struct{}{}:
	default:
		return nil, false
	}
	if !e.silence.take(time.Now()) {
		<-e.silent
		return nil, false
	}
	var once sync.Once
	return func() { once.Do(func() { <-e.silent }) }, true
}

// silenceBudget is a token bucket of routes built for clients that then
// left without sending a byte: MaxSilent at once, then one per
// silenceRefill. While it is empty the entrance waits for a client's first
// byte (SilentWait) before building its route.
type silenceBudget struct {
	mu     sync.Mutex
	burst  float64
	tokens float64
	last   time.Time
}

const silenceRefill = time.Second

func (b *silenceBudget) refill(now time.Time) {
	if b.last.IsZero() {
		b.tokens = b.burst
	} else {
		b.tokens = min(b.burst, b.tokens+float64(now.Sub(b.last))/float64(silenceRefill))
	}
	b.last = now
}

func (b *silenceBudget) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *silenceBudget) refund() {
	b.mu.Lock()
	b.tokens = min(b.burst, b.tokens+1)
	b.mu.Unlock()
}

// awaitFirstBytes reads what the client sends first, waiting at most
// SilentWait: routes cost relays sockets and work, so an entrance that
// cannot start one at once builds none for a client that sent nothing
// until it has waited that long.
func (e *Entrance) awaitFirstBytes(conn net.Conn) ([]byte, error) {
	_ = conn.SetReadDeadline(time.Now().Add(cmp.Or(max(e.SilentWait, 0), DefaultSilentWait)))
	defer conn.SetReadDeadline(time.Time{})
	buf := make([]byte, firstReadSize)
	n, err := conn.Read(buf)
	return buf[:n], err
}

// firstReadSize is the most of a client's first bytes read before its
// route is dialed; the rest follows through the pipeline.
const firstReadSize = 4 << 10

// holdSilent takes a place for the route of a client that sent nothing,
// waiting for one until the handshake's deadline. release gives it back,
// once: at the client's first byte or at the end of the session.
func (e *Entrance) holdSilent(start time.Time) (release func(), err error) {
	timer := time.NewTimer(time.Until(handshakeDeadline(start, e.HandshakeTimeout)))
	defer timer.Stop()
	select {
	case e.silent <- struct{}{}:
	case <-timer.C:
		return nil, ErrSilentClients
	}
	var once sync.Once
	return func() { once.Do(func() { <-e.silent }) }, nil
}

// serveProxy reads the client's proxy request, builds a route to the
// responder it names and answers the client in its own protocol.
func (e *Entrance) serveProxy(conn net.Conn, buffered []byte, s *Session, start time.Time) error {
	_ = conn.SetDeadline(handshakeDeadline(start, e.HandshakeTimeout))
	req, err := readProxyRequest(conn, buffered, e.creds)
	if err != nil {
		conn.Close()
		return err
	}
	_ = conn.SetDeadline(time.Time{})
	answer := req.answerRoute
	if e.EarlyReply && req.kind != proxyHTTPForward {
		_ = conn.SetWriteDeadline(handshakeDeadline(time.Now(), e.HandshakeTimeout))
		if err := req.answerRoute(conn, nil); err != nil {
			conn.Close()
			return fmt.Errorf("answering proxy client: %w", err)
		}
		_ = conn.SetWriteDeadline(time.Time{})
		answer = nil
	}
	var reply func(error) error
	if answer != nil {
		reply = func(err error) error {
			if err := answer(conn, err); err != nil {
				return fmt.Errorf("answering proxy client: %w", err)
			}
			return nil
		}
	}
	err = e.carry(conn, req.target, req.up, reply, nil, s, start)
	e.logRoute(s)
	return err
}
