package gunshu

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// MaxUnconfirmed bounds the bytes past forward that a hop passes on, and
// an entrance sends and keeps, before the route's ok has come back. Past
// it they stop reading from upstream until ok: a route that is never
// confirmed carries at most this much, and an entrance can replay it all.
const MaxUnconfirmed = 64 << 10

// hop is one route through a relay from the moment its next hop is
// connected. It passes est on at once, and with it everything upstream
// already sent; then both directions run at the same time: upstream's
// forward and stream toward the next hop (at most MaxUnconfirmed bytes
// before ok), and the next hop's first line back. That line is what the
// relay itself would have answered: ok passes up unchanged and the route
// is established; fail, a close or route_timeout gets the relay's own
// fail. The bytes on both wires are the 2003 ones, only sooner.
type hop struct {
	relay    *Relay
	up, down net.Conn
	lr       *lineReader // upstream's reader, until forward has passed
	s        *Session
	start    time.Time
	watch    *idleWatch
	passedOK chan struct{} // closed once the next hop's ok went up
	gone     chan struct{} // closed by abort

	abortOnce sync.Once
	cause     error // why the hop was aborted, when the pump did it

	// The forward line's bound: armed when ok went up, lifted when
	// forward has passed.
	fwdMu     sync.Mutex
	fwdPassed bool
}

// run passes est to the next hop, with everything upstream already sent
// when that began with a forward line of fwdLen bytes (0: none yet), and
// serves the route until both directions end. entries is the size of the
// list the relay received, for the debug log.
func (h *hop) run(est []byte, fwdLen int, deadline time.Time, entries int) error {
	r := h.relay
	h.gone = make(chan struct{})
	h.watch = newIdleWatch(r.IdleTimeout, func() { h.abort(ErrIdleTimeout) })
	defer h.watch.stop()
	_ = h.down.SetDeadline(deadline)
	// Upstream's reads are bounded by the route's deadline (below, on
	// down) until ok, then by the command timeout until forward.
	_ = h.up.SetReadDeadline(time.Time{})
	fwdHeld := fwdLen > 0
	var upBytes int64
	if fwdHeld {
		upBytes = int64(len(h.lr.held()) - fwdLen)
		est = append(est, h.lr.held()...)
		h.lr.drop()
	}
	if _, err := h.down.Write(est); err != nil {
		resetClose(h.down)
		return replyAndClose(h.up, failLine, errNextHop{fmt.Errorf("sending est: %w", err)})
	}
	type result struct {
		n   int64
		err error
	}
	pumped := make(chan result, 1)
	go func() {
		n, err := h.pump(fwdHeld, upBytes)
		if err != nil {
			h.abort(err)
		}
		pumped <- result{n, err}
	}()
	down, err := h.passReply()
	if err != nil {
		h.abort(err)
		// Nothing passed up yet: answer fail as a 2003 relay would.
		_ = replyAndClose(h.up, failLine, nil)
		<-pumped
		return h.why(err)
	}
	h.s.Handshake = time.Since(h.start)
	r.log.Debug("route extended", zap.Int("list_entries", entries), zap.Duration("handshake", h.s.Handshake))
	h.s.Bytes.Down, err = copyDirection(h.up, h.down, nil, h.watch)
	h.s.Bytes.Down += int64(down)
	if err != nil {
		h.abort(err)
	}
	up := <-pumped
	h.s.Bytes.Up = up.n
	h.up.Close()
	h.down.Close()
	if h.watch.fired() {
		return ErrIdleTimeout
	}
	return errors.Join(up.err, err)
}

// passReply waits for the next hop's first line and passes an ok up with
// the bytes that came with it. It returns how many of those were stream.
func (h *hop) passReply() (int, error) {
	whole, lineLen, err := readEstReply(h.down, h.relay.Limits.maxLine())
	if err != nil {
		return 0, errNextHop{fmt.Errorf("waiting for ok: %w", err)}
	}
	_ = h.down.SetDeadline(time.Time{})
	if _, err := h.up.Write(whole); err != nil {
		return 0, fmt.Errorf("passing ok: %w", err)
	}
	h.fwdMu.Lock()
	if !h.fwdPassed {
		_ = h.up.SetReadDeadline(time.Now().Add(h.relay.Timeouts.command()))
	}
	h.fwdMu.Unlock()
	h.watch.arm()
	close(h.passedOK)
	return len(whole) - lineLen, nil
}

// pump passes upstream's bytes to the next hop: the forward line (unless
// run already sent it), at most MaxUnconfirmed stream bytes before ok,
// then the rest. n counts stream bytes, already-sent ones included.
func (h *hop) pump(fwdHeld bool, n int64) (int64, error) {
	if !fwdHeld {
		if h.relay.WaitForOK {
			select {
			case <-h.passedOK:
			case <-h.gone:
				return n, nil
			}
		}
		raw, err := h.lr.readRawLine()
		if err == io.EOF {
			// An end before forward goes on as an end: the next hop
			// judges it as it would from a 2003 relay.
			return n, h.halfClose(nil)
		}
		if err == nil {
			err = forwardOK(raw)
		}
		if err != nil {
			return n, fmt.Errorf("waiting for forward: %w", err)
		}
		h.liftForwardBound()
		held := h.lr.held()
		n = int64(len(held))
		first := append(append(make([]byte, 0, len(raw)+len(held)), raw...), held...)
		h.lr.drop()
		if _, err := h.down.Write(first); err != nil {
			return n, errNextHop{fmt.Errorf("sending forward: %w", err)}
		}
	} else {
		h.liftForwardBound()
	}
	if budget := MaxUnconfirmed - n; !h.relay.WaitForOK && budget > 0 && !isClosed(h.passedOK) {
		c, err := copyStream(h.down, h.up, h.watch, budget)
		n += c
		if err != nil || c < budget { // an error, or upstream's end
			return n, h.halfClose(err)
		}
	}
	select {
	case <-h.passedOK:
	case <-h.gone:
		return n, nil
	}
	c, err := copyStream(h.down, h.up, h.watch, 0)
	return n + c, h.halfClose(err)
}

// halfClose passes upstream's orderly end on, after a copy that ended
// with err.
func (h *hop) halfClose(err error) error {
	if err != nil {
		return err
	}
	if cw, ok := h.down.(closeWriter); ok {
		if err := cw.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
	}
	return nil
}

// checkForward checks a forward line that lr holds whole and returns its
// length; the line stays in front of the held bytes, to go on as it came.
func checkForward(lr *lineReader) (int, error) {
	raw, err := lr.readRawLine()
	if err == nil {
		err = forwardOK(raw)
	}
	if err != nil {
		return 0, fmt.Errorf("reading forward: %w", err)
	}
	lr.r -= len(raw)
	return len(raw), nil
}

// forwardOK checks that raw, a line as received, says forward.
func forwardOK(raw []byte) error {
	if line := trimLine(raw[:len(raw)-1]); line != CmdForward {
		return fmt.Errorf("%w: want %q, got %.40q", ErrUnexpected, CmdForward, line)
	}
	return nil
}

func (h *hop) liftForwardBound() {
	h.fwdMu.Lock()
	h.fwdPassed = true
	_ = h.up.SetReadDeadline(time.Time{})
	h.fwdMu.Unlock()
}

// abort ends the route with a reset on both sides, once; the first
// cause is kept.
func (h *hop) abort(err error) {
	h.abortOnce.Do(func() {
		h.cause = err
		close(h.gone)
		resetClose(h.down)
		if isClosed(h.passedOK) {
			resetClose(h.up)
		}
	})
}

// why is the session's error: the cause of the abort when upstream went
// wrong first, else err.
func (h *hop) why(err error) error {
	if h.cause != nil && !errors.Is(h.cause, net.ErrClosed) {
		return h.cause
	}
	return err
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
