package caddymodule

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func init() {
	caddy.RegisterModule(ListenerWrapper{})
}

// ListenerWrapper lets a Caddy server be a Gunshu responder on its own
// port: a connection that opens with est (or test) completes the Gunshu
// handshake and then goes on into the server as an ordinary connection;
// any other connection passes through untouched, every byte intact. Put
// it before the tls wrapper, so the route is set up in the clear and TLS
// runs inside it, end to end between the client and this server.
//
// Connections are sorted and handshakes run off the accept path, so a slow
// or silent peer never holds up the others.
type ListenerWrapper struct {
	// Timeout bounds the wait for a connection's first bytes and for the
	// Gunshu handshake (default 10s). A connection still silent then is
	// passed through to the server, which applies its own timeouts.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// MaxPending bounds the connections being sorted or shaking hands at
	// once (default 1024); further connections wait in the kernel's queue.
	MaxPending int `json:"max_pending,omitempty"`
	// LogAddresses adds the last relay's address to session logs.
	LogAddresses bool `json:"log_addresses,omitempty"`

	responder *gunshu.Responder
	logger    *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (ListenerWrapper) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.gunshu",
		New: func() caddy.Module { return new(ListenerWrapper) },
	}
}

// Provision sets up the responder.
func (lw *ListenerWrapper) Provision(ctx caddy.Context) error {
	if lw.Timeout < 0 {
		return errNegative("timeout", time.Duration(lw.Timeout))
	}
	if lw.MaxPending < 0 {
		return errNegative("max_pending", lw.MaxPending)
	}
	lw.logger = ctx.Logger(lw)
	observer, err := newMetricsObserver(ctx)
	if err != nil {
		return err
	}
	lw.responder = &gunshu.Responder{
		Observer:     observer,
		Timeouts:     gunshu.Timeouts{Command: time.Duration(lw.Timeout)},
		Logger:       lw.logger,
		LogAddresses: lw.LogAddresses,
	}
	return nil
}

// WrapListener wraps ln.
func (lw *ListenerWrapper) WrapListener(ln net.Listener) net.Listener {
	return newSortingListener(ln, lw.responder, time.Duration(lw.Timeout), lw.MaxPending)
}

// UnmarshalCaddyfile sets up the listener wrapper from Caddyfile tokens.
//
//	gunshu {
//		timeout       <duration>
//		max_pending   <count>
//		log_addresses
//	}
func (lw *ListenerWrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // wrapper name
	if d.NextArg() {
		return d.Errf("gunshu listener wrapper takes no arguments, got %q", d.Val())
	}
	return parseOptions(d, "gunshu listener wrapper", nil, func(opt string) (bool, error) {
		var err error
		switch opt {
		case "timeout":
			lw.Timeout, err = durationArg(d)
		case "max_pending":
			lw.MaxPending, err = intArg(d)
		case "log_addresses":
			err = flagArg(d, &lw.LogAddresses)
		default:
			return false, nil
		}
		return true, err
	})
}

// gunshuOpenings are the first lines that make a connection Gunshu's.
var gunshuOpenings = [][]byte{
	[]byte(gunshu.CmdEst + "\n"), []byte(gunshu.CmdEst + "\r\n"),
	[]byte(gunshu.CmdTest + "\n"), []byte(gunshu.CmdTest + "\r\n"),
}

// Defaults of the sorting listener.
const (
	defaultSortTimeout = gunshu.DefaultCommandTimeout
	sniffSize          = 8 // longer than every opening
)

// sortingListener accepts from an inner listener and hands out plain
// connections as they are and Gunshu connections once their route is
// established.
type sortingListener struct {
	net.Listener
	responder *gunshu.Responder
	timeout   time.Duration
	pending   chan struct{} // bounds the connections being sorted
	ready     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	errOnce   sync.Once
	err       error
	mu        sync.Mutex
	sorting   map[net.Conn]struct{}
	wg        sync.WaitGroup
}

func newSortingListener(ln net.Listener, r *gunshu.Responder, timeout time.Duration, maxPending int) *sortingListener {
	if timeout <= 0 {
		timeout = defaultSortTimeout
	}
	if maxPending <= 0 {
		maxPending = gunshu.DefaultMaxPending
	}
	l := &sortingListener{
		Listener:  ln,
		responder: r,
		timeout:   timeout,
		pending:   make(chan struct{}, maxPending),
		ready:     make(chan net.Conn),
		done:      make(chan struct{}),
		sorting:   make(map[net.Conn]struct{}),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

func (l *sortingListener) acceptLoop() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		select {
		case l.pending <- struct{}{}:
		case <-l.done:
			return
		}
		conn, err := l.Listener.Accept()
		if err != nil {
			<-l.pending
			if !transientAcceptError(err) {
				l.fail(err)
				return
			}
			// Back off as net/http does, so running out of descriptors
			// slows the server down instead of stopping it.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
				continue
			case <-l.done:
				return
			}
		}
		backoff = 0
		l.wg.Add(1)
		go l.sort(conn)
	}
}

// transientAcceptError reports an Accept error after which accepting
// can go on.
func transientAcceptError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// fail ends the listener with err, which Accept then returns.
func (l *sortingListener) fail(err error) {
	l.errOnce.Do(func() { l.err = err })
	l.shutdown()
}

// sort tells a Gunshu connection from a plain one and queues it for
// Accept: a Gunshu one after its handshake.
func (l *sortingListener) sort(conn net.Conn) {
	defer l.wg.Done()
	defer func() { <-l.pending }()
	if !l.track(conn) {
		conn.Close()
		return
	}
	out, err := l.open(conn)
	l.untrack(conn)
	if err != nil {
		return // the responder logged it; conn is closed
	}
	select {
	case l.ready <- out:
	case <-l.done:
		out.Close()
	}
}

func (l *sortingListener) open(conn net.Conn) (net.Conn, error) {
	first, isGunshu, err := sniff(conn, l.timeout)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if !isGunshu {
		return &peekedConn{Conn: conn, peeked: first}, nil
	}
	return l.responder.Handshake(conn, first)
}

// sniff reads until the first bytes either open a Gunshu exchange or
// cannot; every byte read is returned. A connection that ends or stays
// silent before that is plain: the server answers it as it would.
func sniff(conn net.Conn, timeout time.Duration) ([]byte, bool, error) {
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	buf := make([]byte, 0, sniffSize)
	for {
		switch opening(buf) {
		case openingGunshu:
			return buf, true, nil
		case openingPlain:
			return buf, false, nil
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

type openingKind int

const (
	openingUndecided openingKind = iota
	openingGunshu
	openingPlain
)

func opening(b []byte) openingKind {
	if len(b) == 0 {
		return openingUndecided
	}
	undecided := false
	for _, o := range gunshuOpenings {
		if bytes.HasPrefix(b, o) {
			return openingGunshu
		}
		undecided = undecided || bytes.HasPrefix(o, b)
	}
	if undecided {
		return openingUndecided
	}
	return openingPlain
}

func (l *sortingListener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sorting == nil {
		return false
	}
	l.sorting[c] = struct{}{}
	return true
}

func (l *sortingListener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.sorting, c)
	l.mu.Unlock()
}

// Accept returns the next connection for the server.
func (l *sortingListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		l.errOnce.Do(func() { l.err = net.ErrClosed })
		return nil, l.err
	}
}

// Close stops accepting, closes the inner listener and the connections
// still being sorted, and waits for its goroutines.
func (l *sortingListener) Close() error {
	err := l.shutdown()
	l.wg.Wait()
	return err
}

func (l *sortingListener) shutdown() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.Listener.Close()
		l.mu.Lock()
		for c := range l.sorting {
			c.Close()
		}
		l.sorting = nil
		l.mu.Unlock()
	})
	return err
}

// peekedConn is a plain connection whose first bytes were read to sort it;
// Read gives them back first.
type peekedConn struct {
	net.Conn
	peeked []byte
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if len(c.peeked) > 0 {
		n := copy(p, c.peeked)
		c.peeked = c.peeked[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes when the connection can, as the HTTP server
// expects of a TCP connection.
func (c *peekedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("half-close not supported")
}

// ReadFrom keeps the connection's fast path (sendfile, splice) for
// writes into it.
func (c *peekedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// Interface guards
var (
	_ caddy.Provisioner     = (*ListenerWrapper)(nil)
	_ caddy.ListenerWrapper = (*ListenerWrapper)(nil)
	_ caddyfile.Unmarshaler = (*ListenerWrapper)(nil)
)
