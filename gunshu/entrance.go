package gunshu

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Entrance carries each connection it serves through a fresh Gunshu route
// to Responder: it is how clients that know nothing of Gunshu use the
// network.
type Entrance struct {
	// Dialer builds the routes.
	Dialer *Dialer
	// Responder is the fixed target of every route.
	Responder string
	// IdleTimeout ends a session after this long without a byte in
	// either direction; 0 never does.
	IdleTimeout time.Duration
	// Limiter bounds the client connections served at once; nil bounds
	// none.
	Limiter *Limiter
	// Logger gets one line per finished session; nil logs nothing.
	Logger *zap.Logger
	// LogAddresses adds the client's address to session logs.
	LogAddresses bool
	Observer     Observer

	once sync.Once
	log  *zap.Logger
	obs  Observer
}

func (e *Entrance) init() {
	e.once.Do(func() {
		e.log = loggerOr(e.Logger)
		e.obs = observerOr(e.Observer)
	})
}

// ServeConn serves one client connection and closes it.
func (e *Entrance) ServeConn(conn net.Conn) error { return e.ServeBuffered(conn, nil) }

// ServeBuffered is ServeConn for a connection of which buffered were
// already read; they are sent first.
func (e *Entrance) ServeBuffered(conn net.Conn, buffered []byte) error {
	e.init()
	start := time.Now()
	e.obs.SessionStarted(RoleInitiator)
	s := Session{Role: RoleInitiator, Command: CmdEst}
	if e.LogAddresses {
		s.Remote = conn.RemoteAddr().String()
	}
	var err error
	if release, lerr := e.Limiter.acquireConn(conn); lerr != nil {
		resetClose(conn)
		err = lerr
	} else {
		err = e.serve(conn, buffered, &s, start)
		release()
	}
	s.end(start, err)
	e.obs.SessionEnded(s)
	logSession(e.log, s)
	return err
}

func (e *Entrance) serve(conn net.Conn, buffered []byte, s *Session, start time.Time) error {
	if e.Responder == "" {
		conn.Close()
		return fmt.Errorf("%w: entrance has no responder", ErrBadAddress)
	}
	route, err := e.Dialer.Establish(context.Background(), e.Responder)
	if err != nil {
		// A plain close: a reset racing the client's connect would look
		// like a refused connection rather than a failed route.
		conn.Close()
		return err
	}
	s.Handshake = time.Since(start)
	// The client is this route's initiator side: "up" in Forward's terms.
	s.Bytes, err = ForwardIdle(conn, route.Conn, buffered, route.Rest, e.IdleTimeout)
	return err
}
