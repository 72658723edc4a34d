package gunshu

import (
	"errors"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu/forward"
)

// Listener wraps a net.Listener: Accept returns connections that completed
// est, ok and forward, as streams. Handshakes run concurrently, so a slow
// peer never holds up Accept; test exchanges are answered on the side.
//
// A Listener from ListenShared serves a port shared with another protocol
// (a web server's, say): a connection that does not open with est or test
// is handed out by Accept as it is, every byte intact, and so is one that
// stays silent for the responder's command timeout: the server behind it
// applies its own timeouts.
type Listener struct {
	ln        net.Listener
	responder *Responder
	shared    bool
	// pending bounds the connections being sorted or shaking hands and
	// those waiting for Accept.
	pending  chan struct{}
	inFlight sessionSet
	streams  chan net.Conn
	done     chan struct{}
	errOnce  sync.Once
	err      error
	close    sync.Once
	wg       sync.WaitGroup
}

// DefaultMaxPending bounds a Listener's handshakes in flight.
const DefaultMaxPending = 1024

// Listen starts accepting on ln. maxPending bounds the handshakes in
// flight (0 means DefaultMaxPending).
func (r *Responder) Listen(ln net.Listener, maxPending int) *Listener {
	return r.listen(ln, maxPending, false)
}

// ListenShared is Listen on a port shared with another protocol: Accept
// also returns the connections that are not Gunshu's, as they came.
func (r *Responder) ListenShared(ln net.Listener, maxPending int) *Listener {
	return r.listen(ln, maxPending, true)
}

func (r *Responder) listen(ln net.Listener, maxPending int, shared bool) *Listener {
	r.init()
	if maxPending <= 0 {
		maxPending = DefaultMaxPending
	}
	l := &Listener{
		ln:        KeepAccepting(ln, AcceptHooks{}),
		responder: r,
		shared:    shared,
		pending:   make(chan struct{}, maxPending),
		streams:   make(chan net.Conn),
		done:      make(chan struct{}),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	for {
		select {
		case l.pending <- struct{}{}:
		case <-l.done:
			return
		}
		conn, err := l.ln.Accept()
		if err != nil {
			<-l.pending
			l.errOnce.Do(func() { l.err = err })
			l.Close()
			return
		}
		l.wg.Add(1)
		go l.handshake(conn)
	}
}

func (l *Listener) handshake(conn net.Conn) {
	defer l.wg.Done()
	defer func() { <-l.pending }()
	id := l.inFlight.add(conn)
	select {
	case <-l.done: // closed before this connection was in inFlight
		l.inFlight.remove(id)
		forward.Abort(conn)
		return
	default:
	}
	out, err := l.open(conn)
	l.inFlight.remove(id)
	if err != nil {
		return // the responder logged it; conn is closed
	}
	select {
	case l.streams <- out:
	case <-l.done:
		out.Close()
	}
}

// open returns conn's stream once its route is established, or, on a
// shared port, conn itself when it is not Gunshu's.
func (l *Listener) open(conn net.Conn) (net.Conn, error) {
	if !l.shared {
		return l.responder.Handshake(conn, nil)
	}
	first, gunshu, err := sniffConn(conn, l.responder.Timeouts.command())
	switch {
	case err != nil:
		conn.Close()
		return nil, err
	case !gunshu:
		return &stream{Conn: conn, rest: first}, nil
	}
	return l.responder.Handshake(conn, first)
}

// routeCommands are the commands a responder's connection opens with.
var routeCommands = []string{CmdEst, CmdTest}

// sniffConn reads conn's first bytes until SniffCommand can tell whether
// they open est or test, and returns every byte read. A connection that
// ends, or stays silent for timeout, is not Gunshu's; an error before any
// byte is returned.
func sniffConn(conn net.Conn, timeout time.Duration) (first []byte, gunshu bool, err error) {
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	buf := make([]byte, 0, 64)
	for {
		switch _, verdict := SniffCommand(buf, routeCommands); verdict {
		case SniffYes:
			return buf, true, nil
		case SniffNo:
			return buf, false, nil
		}
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil && n == 0 {
			if len(buf) > 0 || errors.Is(err, os.ErrDeadlineExceeded) {
				return buf, false, nil
			}
			return nil, false, err
		}
	}
}

// Accept returns the next established stream, or on a shared port the
// next connection that is not Gunshu's.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case st := <-l.streams:
		return st, nil
	case <-l.done:
		l.errOnce.Do(func() { l.err = net.ErrClosed })
		return nil, l.err
	}
}

// Close stops accepting, closes the listener and ends the handshakes in
// flight. Streams already returned by Accept are the caller's.
func (l *Listener) Close() error {
	var err error
	l.close.Do(func() {
		close(l.done)
		err = l.ln.Close()
		l.inFlight.abortAll()
	})
	return err
}

// Wait blocks until every goroutine of the listener has ended; call it
// after Close.
func (l *Listener) Wait() { l.wg.Wait() }

// Addr is the listener's address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }
