package gunshu

import (
	"context"
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
	// Logger gets one line per finished session; nil logs nothing.
	Logger *zap.Logger
	// LogAddresses adds the client's address to session logs.
	LogAddresses bool
	Observer     Observer

	once  sync.Once
	log   *zap.Logger
	obs   Observer
	creds *credentials
}

func (e *Entrance) init() {
	e.once.Do(func() {
		e.log = loggerOr(e.Logger)
		e.obs = observerOr(e.Observer)
		e.creds = newCredentials(e.Username, e.Password)
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
	if e.Responder != "" {
		route, err := e.Dialer.Establish(context.Background(), e.Responder)
		if err != nil {
			// A reset, not an orderly close: the client must not take
			// the missing route for an empty answer.
			forward.Abort(conn)
			return err
		}
		s.Handshake = time.Since(start)
		e.log.Debug("route established", zap.Duration("handshake", s.Handshake))
		// The client is this route's initiator side: "up" in Forward's terms.
		s.Bytes, err = forward.Copy(conn, route.Conn, buffered, route.Rest, e.IdleTimeout)
		return err
	}
	return e.serveProxy(conn, buffered, s, start)
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
	route, err := e.Dialer.Establish(context.Background(), req.target)
	// The route may take longer than the request did; the answer gets a
	// bound of its own.
	_ = conn.SetDeadline(handshakeDeadline(time.Now(), e.HandshakeTimeout))
	if answerErr := req.answerRoute(conn, err); err != nil || answerErr != nil {
		if route != nil {
			forward.Abort(route.Conn)
		}
		conn.Close()
		if err == nil {
			err = fmt.Errorf("answering proxy client: %w", answerErr)
		}
		return err
	}
	_ = conn.SetDeadline(time.Time{})
	s.Handshake = time.Since(start)
	e.log.Debug("route established", zap.Duration("handshake", s.Handshake))
	s.Bytes, err = forward.Copy(conn, route.Conn, req.up, route.Rest, e.IdleTimeout)
	return err
}
