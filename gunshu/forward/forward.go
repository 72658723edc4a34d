// Package forward moves a route's bytes once it is established: both
// directions at once, in the kernel (splice) between two TCP sockets,
// half-closes passed on, an error in either direction ending both with a
// reset, and an optional idle timeout. It knows nothing of the protocol;
// every role of package gunshu uses it for its forward mode.
package forward

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Counts are the bytes one session forwarded in each direction: Up flows
// from the initiator toward the responder, Down back.
type Counts struct {
	Up, Down int64
}

// closeWriter is a connection that can half-close.
type closeWriter interface {
	CloseWrite() error
}

// CloseWrite half-closes c when it can: what a server that shuts down
// its sending side expects of a TCP connection.
func CloseWrite(c net.Conn) error {
	if cw, ok := c.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return errors.New("half-close not supported")
}

// ErrIdleTimeout ends a session that moved no byte for its idle timeout.
var ErrIdleTimeout = errors.New("idle timeout")

// Copy copies bytes both ways between up (toward the initiator) and down
// (toward the responder) until both directions end, then closes both.
// upRest and downRest are bytes already read from up and down that were
// not yet passed on; they go first. An orderly end of one direction is
// passed on as a half-close; an error in either direction closes both at
// once with a reset, so every hop of the route ends.
//
// Once no byte has moved in either direction for idle, the session ends
// as an error would, with ErrIdleTimeout; idle <= 0 never ends it. The
// copy loops only store a timestamp per chunk; one timer per session
// looks at it, so no deadline is set per read.
//
// Between two *net.TCPConn on Linux the copy runs in the kernel (splice)
// and an idle direction holds no pipe and no buffer.
func Copy(up, down net.Conn, upRest, downRest []byte, idle time.Duration) (Counts, error) {
	var (
		counts  Counts
		downErr error
		wg      sync.WaitGroup
		abort   sync.Once
	)
	fail := func() {
		abort.Do(func() {
			Abort(up)
			Abort(down)
		})
	}
	watch := NewIdleWatch(idle, fail)
	watch.Arm()
	defer watch.Stop()
	wg.Add(1)
	go func() {
		defer wg.Done()
		counts.Down, downErr = OneWay(up, down, downRest, watch)
		if downErr != nil {
			fail()
		}
	}()
	var upErr error
	counts.Up, upErr = OneWay(down, up, upRest, watch)
	if upErr != nil {
		fail()
	}
	wg.Wait()
	up.Close()
	down.Close()
	if watch.Fired() {
		return counts, ErrIdleTimeout
	}
	return counts, errors.Join(upErr, downErr)
}

// IdleWatch ends a session after idle without activity. The copy loops
// call Touch (an atomic store) per chunk moved; the timer, once armed,
// sleeps again for whatever is left of idle since the last touch. A nil
// watch (no idle timeout) does nothing.
type IdleWatch struct {
	idle   time.Duration
	base   time.Time
	last   atomic.Int64 // nanoseconds since base of the latest touch
	mu     sync.Mutex
	timer  *time.Timer
	expire func()
	done   atomic.Bool
}

// NewIdleWatch returns a watch that calls expire after idle without a
// touch, counted from Arm; nil when idle <= 0.
func NewIdleWatch(idle time.Duration, expire func()) *IdleWatch {
	if idle <= 0 {
		return nil
	}
	return &IdleWatch{idle: idle, base: time.Now(), expire: expire}
}

// Arm starts the clock: a session's handshake has bounds of its own.
func (w *IdleWatch) Arm() {
	if w == nil {
		return
	}
	w.Touch()
	w.mu.Lock()
	if w.timer == nil {
		w.timer = time.AfterFunc(w.idle, w.check)
	}
	w.mu.Unlock()
}

// Touch records activity now.
func (w *IdleWatch) Touch() {
	if w != nil {
		w.last.Store(int64(time.Since(w.base)))
	}
}

func (w *IdleWatch) check() {
	quiet := time.Since(w.base) - time.Duration(w.last.Load())
	if quiet < w.idle {
		w.mu.Lock()
		w.timer.Reset(w.idle - quiet)
		w.mu.Unlock()
		return
	}
	w.done.Store(true)
	w.expire()
}

// Stop ends the watch; it does not call expire afterwards.
func (w *IdleWatch) Stop() {
	if w == nil {
		return
	}
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
}

// Fired reports whether the watch expired the session.
func (w *IdleWatch) Fired() bool { return w != nil && w.done.Load() }

// OneWay copies src to dst after writing rest, then half-closes dst.
// An orderly EOF is no error. watch, when not nil, is touched per chunk.
func OneWay(dst, src net.Conn, rest []byte, watch *IdleWatch) (int64, error) {
	var n int64
	if len(rest) > 0 {
		w, err := dst.Write(rest)
		n += int64(w)
		if err != nil {
			return n, err
		}
	}
	c, err := Stream(dst, src, watch, 0)
	n += c
	if err != nil {
		return n, err
	}
	if cw, ok := dst.(closeWriter); ok {
		if err := cw.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
			return n, err
		}
	}
	return n, nil
}

// Stream copies until EOF, or until limit bytes when limit > 0 (a
// copy that moved fewer met EOF), in the kernel when both ends allow it.
func Stream(dst, src net.Conn, watch *IdleWatch, limit int64) (int64, error) {
	var spliced int64
	if d, ok := dst.(*net.TCPConn); ok {
		if s, ok := src.(*net.TCPConn); ok {
			n, handled, err := spliceStream(d, s, watch, limit)
			if handled {
				return n, err
			}
			spliced = n
		}
	}
	bufp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bufp)
	var w io.Writer = writerOnly{dst}
	if watch != nil {
		w = touchingWriter{dst, watch}
	}
	var r io.Reader = readerOnly{src}
	if limit > 0 {
		r = io.LimitReader(src, limit-spliced)
	}
	n, err := io.CopyBuffer(w, r, *bufp)
	return spliced + n, err
}

// touchingWriter touches an IdleWatch per write.
type touchingWriter struct {
	w     io.Writer
	watch *IdleWatch
}

func (t touchingWriter) Write(p []byte) (int, error) {
	t.watch.Touch()
	return t.w.Write(p)
}

const copyBufSize = 32 << 10

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// Buffer lends a copy buffer of the pool Stream uses; give it back with
// PutBuffer.
func Buffer() *[]byte { return copyBufPool.Get().(*[]byte) }

// PutBuffer gives back a buffer lent by Buffer.
func PutBuffer(b *[]byte) { copyBufPool.Put(b) }

// readerOnly and writerOnly hide ReadFrom/WriteTo so io.CopyBuffer uses our
// pooled buffer instead of a fresh one.
type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }

// Abort closes c so that its peer sees a reset rather than an orderly
// end: an aborted session must not look like a finished one.
func Abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
