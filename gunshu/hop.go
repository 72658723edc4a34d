package gunshu

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu/forward"
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
	watch    *forward.IdleWatch
	// settled is done once the route's fate before ok is known: the
	// next hop's ok went up (state hopOK) or the hop was aborted
	// (hopGone). A WaitGroup rather than a channel: it lives inside the
	// hop, and a relayed session should cost as little as it can.
	settled sync.WaitGroup
	state   atomic.Int32
	pumping sync.WaitGroup
	upBytes int64 // the pump's count and error, once pumping is done
	upErr   error

	// What the session records: the time to ok and the stream's bytes.
	handshake time.Duration
	bytes     forward.Counts

	abortOnce sync.Once
	cause     error // why the hop was aborted

	// The forward line's bound: armed when ok went up, lifted when
	// forward has passed.
	fwdMu     sync.Mutex
	fwdPassed bool
}

// States of a hop before ok.
const (
	hopPending int32 = iota
	hopOK
	hopGone
)

// open passes est to the next hop, with everything upstream already
// sent when that began with a forward line of fwdLen bytes (0: none yet),
// starts the pump and waits for the next hop's answer; after a nil error
// the route is established and forward serves it. entries is the size of
// the list the relay received, for the debug log.
func (h *hop) open(est []byte, fwdLen int, start, deadline time.Time, entries int) error {
	r := h.relay
	h.settled.Add(1)
	h.watch = forward.NewIdleWatch(r.IdleTimeout, func() { h.abort(forward.ErrIdleTimeout) })
	_ = h.down.SetDeadline(deadline)
	// Upstream's reads are bounded by the route's deadline (below, on
	// down) until ok, then by the command timeout until forward.
	_ = h.up.SetReadDeadline(time.Time{})
	var upBytes int64
	if fwdLen > 0 {
		upBytes = int64(len(h.lr.held()) - fwdLen)
		est = append(est, h.lr.held()...)
		h.lr.drop()
		h.lr = nil
	}
	if _, err := h.down.Write(est); err != nil {
		forward.Abort(h.down)
		return replyAndClose(h.up, failLine, errNextHop{fmt.Errorf("sending est: %w", err)})
	}
	h.pumping.Add(1)
	go h.runPump(fwdLen > 0, upBytes)
	down, err := h.passReply()
	if err != nil {
		if h.state.Load() != hopOK {
			// Nothing passed up yet: answer fail as a 2003 relay would.
			_ = h.up.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = h.up.Write(failLine)
		}
		h.abort(err)
		h.up.Close()
		h.pumping.Wait()
		h.watch.Stop()
		return h.why(err)
	}
	h.handshake = time.Since(start)
	h.bytes.Down = int64(down)
	r.log.Debug("route extended", zap.Int("list_entries", entries), zap.Duration("handshake", h.handshake))
	return nil
}

// runPump runs the pump, upstream to the next hop (see pump). When the
// forward line is still to come, reading it happens first, and the long
// copy then moves to a fresh goroutine: reading a line grows a stack that
// a parked goroutine would keep for the whole session.
func (h *hop) runPump(fwdHeld bool, n int64) {
	if !fwdHeld {
		var err error
		n, err = h.passForward()
		h.lr.drop() // the pump owns upstream's reader
		h.lr = nil
		if err != nil || n < 0 {
			h.pumpDone(max(n, 0), err)
			return
		}
		go func() { h.pumpDone(h.pump(n)) }()
		return
	}
	h.pumpDone(h.pump(n))
}

func (h *hop) pumpDone(n int64, err error) {
	defer h.pumping.Done()
	h.upBytes, h.upErr = n, err
	if err != nil {
		h.abort(err)
	}
}

// forward serves an established route until both directions end. It
// runs with serve's frames gone (see Relay.ServeBuffered): this is where
// a session spends its life, on a small stack.
func (h *hop) forward() error {
	defer h.watch.Stop()
	n, err := forward.OneWay(h.up, h.down, nil, h.watch)
	h.bytes.Down += n
	if err != nil {
		h.abort(err)
	}
	h.pumping.Wait()
	h.bytes.Up = h.upBytes
	h.up.Close()
	h.down.Close()
	if h.watch.Fired() {
		return forward.ErrIdleTimeout
	}
	return errors.Join(h.upErr, err)
}

// passReply waits for the next hop's first line and passes an ok up with
// the bytes that came with it. It returns how many of those were stream.
func (h *hop) passReply() (int, error) {
	whole, lineLen, err := readEstReply(h.down, h.relay.MessageLimits.maxLine())
	if err != nil {
		return 0, errNextHop{fmt.Errorf("waiting for ok: %w", err)}
	}
	_ = h.down.SetDeadline(time.Time{})
	// Settled before ok goes up: from here on an abort resets upstream
	// rather than answering fail after ok.
	if !h.state.CompareAndSwap(hopPending, hopOK) {
		return 0, net.ErrClosed // aborted meanwhile
	}
	h.fwdMu.Lock()
	if !h.fwdPassed {
		_ = h.up.SetReadDeadline(time.Now().Add(h.relay.Timeouts.command()))
	}
	h.fwdMu.Unlock()
	h.settled.Done()
	h.watch.Arm()
	if _, err := h.up.Write(whole); err != nil {
		return 0, fmt.Errorf("passing ok: %w", err)
	}
	return len(whole) - lineLen, nil
}

// pump passes upstream's stream to the next hop, forward having passed:
// at most MaxUnconfirmed bytes before ok, then the rest. n counts stream
// bytes, already-sent ones included.
func (h *hop) pump(n int64) (int64, error) {
	h.liftForwardBound()
	if budget := MaxUnconfirmed - n; !h.relay.WaitForOK && budget > 0 && h.state.Load() == hopPending {
		c, err := forward.Stream(h.down, h.up, h.watch, budget)
		n += c
		if err != nil || c < budget { // an error, or upstream's end
			return n, h.halfClose(err)
		}
	}
	if h.settled.Wait(); h.state.Load() == hopGone {
		return n, nil
	}
	c, err := forward.Stream(h.down, h.up, h.watch, 0)
	return n + c, h.halfClose(err)
}

// passForward reads upstream's forward line (in a 2003 relay's turn: after
// ok, when the relay waits for it) and passes it on as it came, with what
// followed it. It returns the stream bytes passed, or -1 when upstream
// ended before forward or the route is gone.
func (h *hop) passForward() (int64, error) {
	if h.relay.WaitForOK {
		if h.settled.Wait(); h.state.Load() == hopGone {
			return -1, nil
		}
	}
	raw, err := h.lr.readRawLine()
	if err == io.EOF {
		// An end before forward goes on as an end: the next hop
		// judges it as it would from a 2003 relay.
		return -1, h.halfClose(nil)
	}
	if err == nil {
		err = forwardOK(raw)
	}
	if err != nil {
		return -1, fmt.Errorf("waiting for forward: %w", err)
	}
	held := h.lr.held()
	first := append(append(make([]byte, 0, len(raw)+len(held)), raw...), held...)
	h.lr.drop()
	if _, err := h.down.Write(first); err != nil {
		return int64(len(held)), errNextHop{fmt.Errorf("sending forward: %w", err)}
	}
	return int64(len(held)), nil
}

// halfClose passes upstream's orderly end on, after a copy that ended
// with err.
func (h *hop) halfClose(err error) error {
	if err != nil {
		return err
	}
	if err := forward.CloseWrite(h.down); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
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
// cause is kept. Before ok, upstream is left for the caller to answer.
func (h *hop) abort(err error) {
	h.abortOnce.Do(func() {
		h.cause = err
		beforeOK := h.state.CompareAndSwap(hopPending, hopGone)
		if beforeOK {
			h.settled.Done()
		}
		forward.Abort(h.down)
		if !beforeOK {
			forward.Abort(h.up)
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
