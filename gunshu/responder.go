package gunshu

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu/forward"
)

// ErrTestAnswered reports a connection that was a test exchange: it was
// answered and closed, and there is no stream.
var ErrTestAnswered = errors.New("test answered")

// Responder accepts the end of a route: it reads est and its list, answers
// ok, waits for forward, and hands over the stream. It answers test too.
// The zero value is ready to use.
type Responder struct {
	MessageLimits MessageLimits
	Timeouts      Timeouts
	// SessionLimiter bounds the sessions held at once, from the start of the
	// handshake to the stream's Close; nil bounds none.
	SessionLimiter *SessionLimiter
	// Logger gets one line per finished session; nil logs nothing.
	Logger *zap.Logger
	// LogAddresses adds the last relay's address to session logs.
	LogAddresses bool
	Observer     Observer

	once sync.Once
	log  *zap.Logger
	obs  Observer
}

func (r *Responder) init() {
	r.once.Do(func() {
		r.log = loggerOr(r.Logger)
		r.obs = observerOr(r.Observer)
	})
}

// Handshake performs the responder's side of the protocol on conn, of
// which buffered were already read. On success it returns the application
// stream: its Read yields the bytes after forward. Closing the stream
// records the session's end. On failure conn is closed; a test exchange
// returns ErrTestAnswered.
func (r *Responder) Handshake(conn net.Conn, buffered []byte) (net.Conn, error) {
	r.init()
	start := time.Now()
	s := startSession(r.obs, RoleResponder, conn, r.LogAddresses)
	release, err := r.SessionLimiter.acquireConn(conn)
	if err != nil {
		err = replyAndClose(conn, failLine, err)
		r.end(s, start, err)
		return nil, err
	}
	rest, err := r.handshake(conn, buffered, &s, start)
	if err != nil {
		release()
		r.end(s, start, err)
		return nil, err
	}
	s.Handshake = time.Since(start)
	st := &stream{Conn: conn, rest: rest}
	st.done = func() {
		release()
		s.Bytes = forward.Counts{Up: st.up.Load(), Down: st.down.Load()}
		r.end(s, start, nil)
	}
	return st, nil
}

func (r *Responder) end(s Session, start time.Time, err error) {
	if errors.Is(err, ErrTestAnswered) {
		err = nil
	}
	s.finish(r.obs, r.log, start, err)
}

func (r *Responder) handshake(conn net.Conn, buffered []byte, s *Session, start time.Time) ([]byte, error) {
	lr := newLineReader(conn, buffered, r.MessageLimits.maxLine())
	rest, err := r.readRoute(conn, lr, s, start)
	if lr.buf != nil {
		lr.release()
	}
	return rest, err
}

func (r *Responder) readRoute(conn net.Conn, lr *lineReader, s *Session, start time.Time) ([]byte, error) {
	_ = conn.SetReadDeadline(start.Add(r.Timeouts.command()))
	// The list is read in full, as the protocol asks, and then dropped.
	list, err := readEst(conn, lr, s, r.MessageLimits.maxList(), nil)
	if err != nil {
		return nil, err
	}
	r.log.Debug("est received", zap.Int("list_entries", len(list)), zap.Duration("after", time.Since(start)))
	if _, err := conn.Write(okLine); err != nil {
		conn.Close()
		return nil, fmt.Errorf("answering ok: %w", err)
	}
	if err := lr.expectLine(CmdForward); err != nil {
		conn.Close()
		return nil, fmt.Errorf("waiting for forward: %w", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return lr.release(), nil
}

// stream is a connection some of whose bytes were read already, which
// Read gives back first: an established route at the responder (the
// bytes the handshake reader took past forward), or on a shared port a
// connection that is not Gunshu's (the bytes read to tell).
type stream struct {
	net.Conn
	rest      []byte
	done      func()
	closeOnce sync.Once
	// up and down count the application bytes read and written, for the
	// session's Counts.
	up, down atomic.Int64
}

func (s *stream) Read(p []byte) (int, error) {
	if len(s.rest) > 0 {
		n := copy(p, s.rest)
		s.rest = s.rest[n:]
		s.up.Add(int64(n))
		return n, nil
	}
	n, err := s.Conn.Read(p)
	s.up.Add(int64(n))
	return n, err
}

func (s *stream) Write(p []byte) (int, error) {
	n, err := s.Conn.Write(p)
	s.down.Add(int64(n))
	return n, err
}

// CloseWrite half-closes the route when the connection supports it.
func (s *stream) CloseWrite() error { return forward.CloseWrite(s.Conn) }

// ReadFrom lets io.Copy into the stream use the connection's fast path.
func (s *stream) ReadFrom(r io.Reader) (int64, error) {
	var (
		n   int64
		err error
	)
	if rf, ok := s.Conn.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{s.Conn}, r)
	}
	s.down.Add(n)
	return n, err
}

func (s *stream) Close() error {
	err := s.Conn.Close()
	s.closeOnce.Do(func() {
		if s.done != nil {
			s.done()
		}
	})
	return err
}
