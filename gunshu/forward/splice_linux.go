package forward

import (
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// spliceStream moves src to dst through a kernel pipe with splice(2),
// without copying into user space. Unlike io.Copy's splice path, the pipe
// is held only while bytes flow: when src has nothing to read, the pipe
// goes back to a shared pool before the goroutine parks, so an idle
// session costs its two sockets and nothing more.
//
// handled is false when the caller should go on with a user-space copy:
// the kernel refused splice for these sockets (nothing was moved then), or
// no pipe could be had (out of file descriptors) at a point where the pipe
// held nothing, after written bytes. A relay near its fd limit thus keeps
// its sessions, at the price of a buffer each while they copy.
//
// With limit > 0 it stops after limit bytes.
func spliceStream(dst, src *net.TCPConn, watch *IdleWatch, limit int64) (written int64, handled bool, err error) {
	srcRaw, err := src.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	dstRaw, err := dst.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	var p *kernelPipe
	defer func() {
		if p != nil {
			pipes.put(p)
		}
	}()
	for limit <= 0 || written < limit {
		chunk := maxSpliceChunk
		if limit > 0 {
			chunk = int(min(limit-written, maxSpliceChunk))
		}
		var (
			inPipe  int
			readErr error
		)
		waitErr := srcRaw.Read(func(fd uintptr) bool {
			if p == nil {
				if p, readErr = pipes.get(); readErr != nil {
					return true
				}
			}
			inPipe, readErr = splice(int(fd), p.w, chunk)
			if readErr == unix.EAGAIN {
				// Nothing to read: park without the pipe. The EAGAIN was
				// seen after the poller reset its readiness, so no
				// wake-up can be lost.
				pipes.put(p)
				p = nil
				return false
			}
			return true
		})
		if waitErr != nil {
			return written, true, waitErr
		}
		if p == nil && readErr != nil {
			return written, false, nil // no pipe: copy in user space
		}
		if readErr == unix.EINVAL && written == 0 {
			return 0, false, nil
		}
		if readErr != nil {
			return written, true, readErr
		}
		if inPipe == 0 {
			return written, true, nil // EOF
		}
		watch.Touch()
		n, err := drainPipe(dstRaw, p, inPipe)
		written += int64(n)
		if err != nil {
			// The pipe may still hold bytes: do not pool it.
			p.close()
			p = nil
			return written, true, err
		}
	}
	return written, true, nil
}

// drainPipe moves inPipe bytes from p into the socket behind dstRaw.
func drainPipe(dstRaw syscall.RawConn, p *kernelPipe, inPipe int) (int, error) {
	written := 0
	for written < inPipe {
		var n int
		var spliceErr error
		err := dstRaw.Write(func(fd uintptr) bool {
			n, spliceErr = splice(p.r, int(fd), inPipe-written)
			return spliceErr != unix.EAGAIN
		})
		if err != nil {
			return written, err
		}
		if spliceErr != nil {
			return written, spliceErr
		}
		if n == 0 {
			return written, unix.EPIPE
		}
		written += n
	}
	return written, nil
}

const (
	// maxSpliceChunk bounds one splice from a socket, and is the pipe's size.
	maxSpliceChunk = 1 << 20
	// idlePipes bounds the pool; more pipes than this are closed on return.
	idlePipes = 256
)

func splice(in, out, max int) (int, error) {
	for {
		n, err := unix.Splice(in, nil, out, nil, max, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if err == unix.EINTR {
			continue
		}
		return int(n), err
	}
}

type kernelPipe struct{ r, w int }

func (p *kernelPipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// pipePool keeps a bounded stack of empty pipes. Unlike a sync.Pool it
// never drops a pipe without closing it.
type pipePool struct {
	mu   sync.Mutex
	free []*kernelPipe
}

var pipes pipePool

func (pp *pipePool) get() (*kernelPipe, error) {
	pp.mu.Lock()
	if n := len(pp.free); n > 0 {
		p := pp.free[n-1]
		pp.free = pp.free[:n-1]
		pp.mu.Unlock()
		return p, nil
	}
	pp.mu.Unlock()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	// A larger pipe lets one splice move more; pages are allocated only
	// when used, so an idle pipe stays small. Failure is harmless.
	_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, maxSpliceChunk)
	return &kernelPipe{r: fds[0], w: fds[1]}, nil
}

func (pp *pipePool) put(p *kernelPipe) {
	pp.mu.Lock()
	if len(pp.free) < idlePipes {
		pp.free = append(pp.free, p)
		pp.mu.Unlock()
		return
	}
	pp.mu.Unlock()
	p.close()
}
