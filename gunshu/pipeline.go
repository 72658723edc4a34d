package gunshu

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu/forward"
)

// pipeline carries a client's stream onto a route that is not yet
// confirmed: est, forward and every byte the client sent leave in one
// write, and the client's further bytes follow at once. Until the route's
// ok it keeps what it sent (at most MaxUnconfirmed bytes; past that it
// stops reading the client), so that a route that fails, closes or times
// out before ok is replaced by a fresh one carrying the same bytes. A
// responder hands a stream over only after its own ok, so a route that
// failed before ok delivered nothing; replays reach the application once.
type pipeline struct {
	client net.Conn
	// proven, when set, is called once at the client's first byte.
	proven func()
	watch  *forward.IdleWatch
	cancel context.CancelFunc // ends the attempts when the client is gone

	mu    sync.Mutex
	cond  sync.Cond
	held  []byte   // what the client sent, kept until ok
	route net.Conn // the route the client's bytes go to; nil between attempts
	state pipeState
	eof   bool  // the client ended its stream
	sent  int64 // client bytes read, each counted once
	cause error // why the session was aborted
}

type pipeState int

const (
	pending pipeState = iota
	confirmed
	ended
)

func newPipeline(client net.Conn, held []byte, cancel context.CancelFunc) *pipeline {
	p := &pipeline{client: client, held: held, sent: int64(len(held)), cancel: cancel}
	p.cond.L = &p.mu
	return p
}

// send writes est, forward and everything held to a fresh route.
func (p *pipeline) send(conn net.Conn, est []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != pending {
		return net.ErrClosed
	}
	msg := make([]byte, 0, len(est)+len(forwardLine)+len(p.held))
	msg = append(append(append(msg, est...), forwardLine...), p.held...)
	if _, err := conn.Write(msg); err != nil {
		return err
	}
	if p.eof {
		_ = forward.CloseWrite(conn)
	}
	p.route = conn
	return nil
}

func (p *pipeline) drop(conn net.Conn) {
	p.mu.Lock()
	if p.route == conn {
		p.route = nil
	}
	p.mu.Unlock()
}

// confirm is told the route answered ok: what was held is no longer
// needed and the client's bytes may flow unbounded. It reports false
// when the session ended meanwhile.
func (p *pipeline) confirm() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != pending {
		return false
	}
	p.state, p.held = confirmed, nil
	p.cond.Broadcast()
	p.watch.Arm()
	return true
}

// fail aborts the session with a reset on both sides, once.
func (p *pipeline) fail(err error) {
	p.mu.Lock()
	if p.state == ended {
		p.mu.Unlock()
		return
	}
	p.state, p.cause = ended, err
	route := p.route
	p.cond.Broadcast()
	p.mu.Unlock()
	p.cancel()
	forward.Abort(p.client)
	if route != nil {
		forward.Abort(route)
	}
}

// pump moves the client's bytes to the route until the client ends its
// stream, and returns how many it read.
func (p *pipeline) pump() (int64, error) {
	n, err := p.pumpHeld()
	if err != nil || n < 0 {
		return p.sent, err
	}
	p.mu.Lock()
	route := p.route
	p.mu.Unlock()
	c, err := forward.Stream(route, p.client, p.watch, 0)
	p.sent += c
	if err == nil {
		_ = forward.CloseWrite(route)
	}
	return p.sent, err
}

// pumpHeld moves the client's bytes through user space while they must
// be kept (until ok) or watched (until the first byte of a client that
// was silent). It returns -1 when the client ended its stream or the
// session ended.
func (p *pipeline) pumpHeld() (int, error) {
	bufp := forward.Buffer()
	defer forward.PutBuffer(bufp)
	for {
		p.mu.Lock()
		for p.state == pending && len(p.held) >= MaxUnconfirmed {
			p.cond.Wait()
		}
		state, room := p.state, MaxUnconfirmed-len(p.held)
		p.mu.Unlock()
		switch {
		case state == ended:
			return -1, nil
		case state == confirmed && p.proven == nil:
			return 0, nil
		}
		b := *bufp
		if state == pending {
			b = b[:min(len(b), room)]
		}
		n, err := p.client.Read(b)
		if n > 0 {
			if p.proven != nil {
				p.proven()
				p.proven = nil
			}
			if werr := p.pass(b[:n]); werr != nil {
				return -1, werr
			}
		}
		if errors.Is(err, io.EOF) {
			p.clientEnded()
			return -1, nil
		}
		if err != nil {
			return -1, err
		}
	}
}

// pass sends b on the route and keeps it while the route is unconfirmed.
// Before ok a failed write is the route's failure, which its reply shows;
// the bytes go out again on the next route.
func (p *pipeline) pass(b []byte) error {
	p.watch.Touch()
	p.mu.Lock()
	p.sent += int64(len(b))
	if p.state == ended {
		p.mu.Unlock()
		return net.ErrClosed
	}
	if p.state == confirmed {
		// Confirmed: only this goroutine writes, and the lock must
		// stay free for fail while the write waits.
		route := p.route
		p.mu.Unlock()
		_, err := route.Write(b)
		return err
	}
	defer p.mu.Unlock()
	p.held = append(p.held, b...)
	if p.route != nil {
		_, _ = p.route.Write(b) // bounded by the route's deadline
	}
	return nil
}

func (p *pipeline) clientEnded() {
	p.mu.Lock()
	p.eof = true
	if p.route != nil {
		_ = forward.CloseWrite(p.route)
	}
	p.mu.Unlock()
}

// why is the session's error: the abort's cause, if there was one.
func (p *pipeline) why(err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cause != nil {
		return p.cause
	}
	return err
}

// carry takes client's stream to target through a pipelined route (see
// pipeline), held being the client's bytes read so far. answer, when not
// nil, tells a proxy client how the route went, before any byte of the
// stream; without it a client whose route failed gets a reset. proven,
// when not nil, is called at the client's first byte.
func (e *Entrance) carry(client net.Conn, target string, held []byte, answer func(error) error, proven func(), s *Session, start time.Time) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := newPipeline(client, held, cancel)
	p.proven = proven
	p.watch = forward.NewIdleWatch(e.IdleTimeout, func() { p.fail(forward.ErrIdleTimeout) })
	defer p.watch.Stop()
	type result struct {
		n   int64
		err error
	}
	pumped := make(chan result, 1)
	go func() {
		n, err := p.pump()
		if err != nil {
			p.fail(err)
		}
		pumped <- result{n, err}
	}()
	route, err := e.Dialer.open(ctx, target, p)
	if err == nil && answer != nil {
		_ = client.SetWriteDeadline(handshakeDeadline(time.Now(), e.HandshakeTimeout))
		if aerr := answer(nil); aerr != nil {
			forward.Abort(route.Conn)
			route, err = nil, aerr
		}
		_ = client.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		err = p.why(err)
		if answer != nil && !errors.Is(err, net.ErrClosed) {
			_ = client.SetWriteDeadline(handshakeDeadline(time.Now(), e.HandshakeTimeout))
			_ = answer(err)
			client.Close()
		}
		p.fail(err)
		<-pumped
		return err
	}
	if !p.confirm() {
		forward.Abort(route.Conn)
		<-pumped
		return p.why(net.ErrClosed)
	}
	s.Handshake = time.Since(start)
	var down int64
	down, err = forward.OneWay(client, route.Conn, route.Rest, p.watch)
	if err != nil {
		p.fail(err)
	}
	up := <-pumped
	client.Close()
	route.Conn.Close()
	s.Bytes = forward.Counts{Up: up.n, Down: down}
	if p.watch.Fired() {
		return forward.ErrIdleTimeout
	}
	return errors.Join(up.err, err)
}
