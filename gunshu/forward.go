package gunshu

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

// Forward copies bytes both ways between up (toward the initiator) and
// down (toward the responder) until both directions end, then closes both.
// upRest and downRest are bytes already read from up and down that were
// not yet passed on; they go first. An orderly end of one direction is
// passed on as a half-close; an error in either direction closes both at
// once with a reset, so every hop of the route ends.
//
// Between two *net.TCPConn on Linux the copy runs in the kernel (splice)
// and an idle direction holds no pipe and no buffer.
func Forward(up, down net.Conn, upRest, downRest []byte) (Counts, error) {
	return ForwardIdle(up, down, upRest, downRest, 0)
}

// ErrIdleTimeout ends a session that moved no byte for its idle timeout.
var ErrIdleTimeout = errors.New("idle timeout")

// ForwardIdle is Forward that also ends the session, like an error would,
// once no byte has moved in either direction for idle; idle <= 0 never
// does. The copy loops only store a timestamp per chunk; one timer per
// session looks at it, so no deadline is set per read.
func ForwardIdle(up, down net.Conn, upRest, downRest []byte, idle time.Duration) (Counts, error) {
	var (
		counts  Counts
		downErr error
		wg      sync.WaitGroup
		abort   sync.Once
	)
	fail := func() {
		abort.Do(func() {
			resetClose(up)
			resetClose(down)
		})
	}
	watch := newIdleWatch(idle, fail)
	watch.arm()
	defer watch.stop()
	wg.Add(1)
	go func() {
		defer wg.Done()
		counts.Down, downErr = copyDirection(up, down, downRest, watch)
		if downErr != nil {
			fail()
		}
	}()
	var upErr error
	counts.Up, upErr = copyDirection(down, up, upRest, watch)
	if upErr != nil {
		fail()
	}
	wg.Wait()
	up.Close()
	down.Close()
	if watch.fired() {
		return counts, ErrIdleTimeout
	}
	return counts, errors.Join(upErr, downErr)
}

// idleWatch ends a session after idle without activity. The copy loops
// call touch (an atomic store) per chunk moved; the timer, once armed,
// sleeps again for whatever is left of idle since the last touch. A nil
// watch (no idle timeout) does nothing.
type idleWatch struct {
	idle   time.Duration
	base   time.Time
	last   atomic.Int64 // nanoseconds since base of the latest touch
	mu     sync.Mutex
	timer  *time.Timer
	expire func()
	done   atomic.Bool
}

// newIdleWatch returns a watch that calls expire after idle without a
// touch, counted from arm; nil when idle <= 0.
func newIdleWatch(idle time.Duration, expire func()) *idleWatch {
	if idle <= 0 {
		return nil
	}
	return &idleWatch{idle: idle, base: time.Now(), expire: expire}
}

// arm starts the clock: a session's handshake has bounds of its own.
func (w *idleWatch) arm() {
	if w == nil {
		return
	}
	w.touch()
	w.mu.Lock()
	if w.timer == nil {
		w.timer = time.AfterFunc(w.idle, w.check)
	}
	w.mu.Unlock()
}

func (w *idleWatch) touch() {
	if w != nil {
		w.last.Store(int64(time.Since(w.base)))
	}
}

func (w *idleWatch) check() {
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

func (w *idleWatch) stop() {
	if w == nil {
		return
	}
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
}

func (w *idleWatch) fired() bool { return w != nil && w.done.Load() }

// copyDirection copies src to dst after writing rest, then half-closes dst.
// An orderly EOF is no error. watch, when not nil, is touched per chunk.
func copyDirection(dst, src net.Conn, rest []byte, watch *idleWatch) (int64, error) {
	var n int64
	if len(rest) > 0 {
		w, err := dst.Write(rest)
		n += int64(w)
		if err != nil {
			return n, err
		}
	}
	c, err := copyStream(dst, src, watch, 0)
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

// copyStream copies until EOF, or until limit bytes when limit > 0 (a
// copy that moved fewer met EOF), in the kernel when both ends allow it.
func copyStream(dst, src net.Conn, watch *idleWatch, limit int64) (int64, error) {
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

// touchingWriter touches an idleWatch per write.
type touchingWriter struct {
	w     io.Writer
	watch *idleWatch
}

func (t touchingWriter) Write(p []byte) (int, error) {
	t.watch.touch()
	return t.w.Write(p)
}

const copyBufSize = 32 << 10

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// readerOnly and writerOnly hide ReadFrom/WriteTo so io.CopyBuffer uses our
// pooled buffer instead of a fresh one.
type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }

// resetClose closes c so that its peer sees a reset rather than an
// orderly end: an aborted session must not look like a finished one.
func resetClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
