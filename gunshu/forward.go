package gunshu

import (
	"errors"
	"io"
	"net"
	"sync"
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
	wg.Add(1)
	go func() {
		defer wg.Done()
		counts.Down, downErr = copyDirection(up, down, downRest)
		if downErr != nil {
			fail()
		}
	}()
	var upErr error
	counts.Up, upErr = copyDirection(down, up, upRest)
	if upErr != nil {
		fail()
	}
	wg.Wait()
	up.Close()
	down.Close()
	return counts, errors.Join(upErr, downErr)
}

// copyDirection copies src to dst after writing rest, then half-closes dst.
// An orderly EOF is no error.
func copyDirection(dst, src net.Conn, rest []byte) (int64, error) {
	var n int64
	if len(rest) > 0 {
		w, err := dst.Write(rest)
		n += int64(w)
		if err != nil {
			return n, err
		}
	}
	c, err := copyStream(dst, src)
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

// copyStream copies until EOF, in the kernel when both ends allow it.
func copyStream(dst, src net.Conn) (int64, error) {
	if d, ok := dst.(*net.TCPConn); ok {
		if s, ok := src.(*net.TCPConn); ok {
			if n, handled, err := spliceStream(d, s); handled {
				return n, err
			}
		}
	}
	bufp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bufp)
	return io.CopyBuffer(writerOnly{dst}, readerOnly{src}, *bufp)
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
