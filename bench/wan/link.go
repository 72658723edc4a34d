package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The link model. Every byte crosses a link d after it reached it, each
// way, in order. A connection to a link is accepted and the far side
// dialed at once (loopback, no time), and the TCP handshake is charged as
// a floor: no client byte reaches the far side before accept + 3d (SYN,
// SYN-ACK, then the ACK the first byte rides on), and no server byte
// reaches the client before accept + 4d (the server can only write once it
// has accepted, 3d, and its byte then needs d). A half-close (FIN) and a
// reset follow the bytes before them with the same delay. This is issue
// #14's model; Emulator.AcceptAtHandshake is the stricter one in which the
// far side sees the connection only when its first byte could arrive.
const (
	clientFloorD = 3 // client-to-server floor, in d
	serverFloorD = 4 // server-to-client floor, in d
)

// Kind classifies a connection by its first line, so route connections
// (est) can be told from a manager's patrol tests through the same link.
type Kind int

// Connection kinds, by the first line the client sends.
const (
	KindNone  Kind = iota // closed before a full first line or 8 bytes
	KindEst               // "est"
	KindTest              // "test"
	KindOther             // anything else (HTTP, SOCKS5, reg, list)
	numKinds
)

// maxHead bounds the bytes of a connection's start kept to classify it.
const maxHead = 16 << 10

// classify names the kind of a connection from its first bytes: ok is
// false while more bytes could still change the answer.
func classify(head []byte) (k Kind, ok bool) {
	line, _, found := bytes.Cut(head, []byte("\n"))
	if !found && len(head) < 8 {
		return KindNone, false
	}
	switch string(bytes.TrimRight(line, "\r")) {
	case "est":
		return KindEst, true
	case "test":
		return KindTest, true
	}
	return KindOther, true
}

// parseEst reads the list of an est request ("est", a count, that many
// addresses, one a line) from the start of a stream; complete is false
// while more bytes are needed. A malformed request is complete with no
// names.
func parseEst(head []byte) (names []string, complete bool) {
	lines := bytes.Split(head, []byte("\n"))
	lines = lines[:len(lines)-1] // the last is not a whole line yet
	if len(lines) < 2 {
		return nil, false
	}
	n, err := strconv.Atoi(string(bytes.TrimSpace(lines[1])))
	if err != nil || n < 0 {
		return nil, true
	}
	if len(lines) < 2+n {
		return nil, false
	}
	for _, l := range lines[2 : 2+n] {
		names = append(names, string(bytes.TrimSpace(l)))
	}
	return names, true
}

// Counts are a link's connections so far: all accepted, by kind, and the
// est connections whose list named each address. A relay on a route to a
// responder always receives a list that names it, so Naming tells the
// routes to one responder from routes elsewhere (a browser's own
// requests, say) through the same relays.
type Counts struct {
	Conns  int64
	Kinds  [numKinds]int64
	Naming map[string]int64
}

// A Counter picks one count out of Counts.
type Counter func(Counts) int64

// AllConns counts every connection.
func AllConns(c Counts) int64 { return c.Conns }

// EstConns counts route connections (est).
func EstConns(c Counts) int64 { return c.Kinds[KindEst] }

// EstNaming counts route connections whose list names addr.
func EstNaming(addr string) Counter {
	return func(c Counts) int64 { return c.Naming[addr] }
}

// Emulator makes links that share one delay and one record of how late
// the emulator delivered against the model.
type Emulator struct {
	D time.Duration
	// AcceptAtHandshake dials the far side only when the client's
	// handshake would be complete (accept + 3d), as a TCP server accepts,
	// instead of at once. The issue #14 model dials at once: then a
	// server (a relay) can act on a connection 3d before its first byte
	// arrives, and handshakes along a chain of relays overlap.
	AcceptAtHandshake bool

	mu    sync.Mutex
	links []*Link

	lateN, lateSum, lateMax, lateOver atomic.Int64 // nanoseconds; over: > 1 ms
	windowMax                         atomic.Int64 // the latest delivery since StartWindow

	// Trace keeps every accept and delivery since StartWindow, for
	// WindowTrace (--trace).
	Trace       bool
	traceMu     sync.Mutex
	windowStart time.Time
	events      []traceEvent
}

// traceEvent is one thing a link did: accepted a connection, or
// delivered a chunk (or an end) that reached it at arrived.
type traceEvent struct {
	link          string
	what          string // "accept", or "↑ 120 B", "↓ eof"...
	arrived, done time.Time
}

// Lateness is how far behind the model's delivery time the emulator wrote.
type Lateness struct {
	Deliveries int64
	Mean, Max  time.Duration
	OverMs     int64 // deliveries more than 1 ms late
}

// Lateness returns the deliveries so far and how late they were.
func (e *Emulator) Lateness() Lateness {
	n := e.lateN.Load()
	l := Lateness{Deliveries: n, Max: time.Duration(e.lateMax.Load()), OverMs: e.lateOver.Load()}
	if n > 0 {
		l.Mean = time.Duration(e.lateSum.Load() / n)
	}
	return l
}

// resetLateness forgets the deliveries so far (the warm-up's).
func (e *Emulator) resetLateness() {
	e.lateN.Store(0)
	e.lateSum.Store(0)
	e.lateMax.Store(0)
	e.lateOver.Store(0)
}

// StartWindow starts watching for the latest delivery, for one request.
func (e *Emulator) StartWindow() {
	e.windowMax.Store(0)
	e.traceMu.Lock()
	e.windowStart, e.events = time.Now(), nil
	e.traceMu.Unlock()
}

func (e *Emulator) trace(link, what string, arrived time.Time) {
	if !e.Trace {
		return
	}
	e.traceMu.Lock()
	e.events = append(e.events, traceEvent{link: link, what: what, arrived: arrived, done: time.Now()})
	e.traceMu.Unlock()
}

// WindowTrace lists what the links did since StartWindow, in order, with
// times in RTT from its start: when each chunk was delivered and when it
// had reached its link. The gaps between one link's delivery and the next
// link's accept or arrival are the parts' own time.
func (e *Emulator) WindowTrace() string {
	e.traceMu.Lock()
	defer e.traceMu.Unlock()
	rtt := float64(2 * e.D)
	at := func(t time.Time) float64 { return float64(t.Sub(e.windowStart)) / rtt }
	var b strings.Builder
	for _, ev := range e.events {
		fmt.Fprintf(&b, "\n    %6.3f  %-12s %-10s reached the link at %6.3f", at(ev.done), ev.link, ev.what, at(ev.arrived))
	}
	return b.String()
}

// WindowLate is how late the latest delivery since StartWindow was.
func (e *Emulator) WindowLate() time.Duration { return time.Duration(e.windowMax.Load()) }

func (e *Emulator) late(d time.Duration) {
	e.lateN.Add(1)
	e.lateSum.Add(int64(d))
	if d > time.Millisecond {
		e.lateOver.Add(1)
	}
	storeMax(&e.lateMax, int64(d))
	storeMax(&e.windowMax, int64(d))
}

func storeMax(v *atomic.Int64, x int64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}

// Snapshot is every link's counts at one moment.
type Snapshot map[*Link]Counts

// Snapshot returns the counts of every link made so far.
func (e *Emulator) Snapshot() Snapshot {
	e.mu.Lock()
	links := slices.Clone(e.links)
	e.mu.Unlock()
	s := make(Snapshot, len(links))
	for _, l := range links {
		s[l] = l.Counts()
	}
	return s
}

// Delta is how many connections count picks link l saw between s and
// later.
func (s Snapshot) Delta(later Snapshot, l *Link, count Counter) int64 {
	return count(later[l]) - count(s[l])
}

// String describes what changed between s and later: for each link that
// saw a connection, how many, and of those how many were est.
func (s Snapshot) String(later Snapshot) string {
	var parts []string
	for l, c := range later {
		if n := c.Conns - s[l].Conns; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d/%d est", l.Name, n, c.Kinds[KindEst]-s[l].Kinds[KindEst]))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// Link is one emulated link in front of a server: it listens on a
// loopback port and carries every connection to Target with the model's
// delays.
type Link struct {
	Name   string
	Target string
	*server

	em       *Emulator
	countsMu sync.Mutex
	counts   Counts
}

// NewLink starts a link to target on a fresh loopback port.
func (e *Emulator) NewLink(name, target string) (*Link, error) {
	s, err := listen()
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	l := &Link{Name: name, Target: target, server: s, em: e}
	e.mu.Lock()
	e.links = append(e.links, l)
	e.mu.Unlock()
	s.serve(l.carry)
	return l, nil
}

// Counts returns the connections seen so far.
func (l *Link) Counts() Counts {
	l.countsMu.Lock()
	defer l.countsMu.Unlock()
	c := l.counts
	c.Naming = maps.Clone(c.Naming)
	return c
}

// WaitIdle waits until no link holds a connection, as after start-up
// probes whose routes are still being built, for at most timeout.
func (e *Emulator) WaitIdle(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	e.mu.Lock()
	links := slices.Clone(e.links)
	e.mu.Unlock()
	for _, l := range links {
		for l.active() > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("link %s still carries a connection: %w", l.Name, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

// carry dials the far side (at once, or once the handshake would be
// complete) and runs both directions. The client's bytes are read and
// stamped from the start, whenever the far side is dialed.
func (l *Link) carry(client *net.TCPConn, accepted time.Time) {
	l.countsMu.Lock()
	l.counts.Conns++
	l.countsMu.Unlock()
	d := l.em.D
	l.em.trace(l.Name, "accept", accepted)
	up := &direction{em: l.em, link: l.Name, arrow: "↑", src: client, floor: accepted.Add(clientFloorD * d), onHead: l.classified}
	upQ := make(chan event, queueDepth)
	go up.read(upQ)
	server, err := l.dialFar(accepted)
	if err != nil {
		abort(client)
		drain(upQ)
		return
	}
	defer l.untrack(server)
	defer server.Close()
	up.dst = server
	down := &direction{em: l.em, link: l.Name, arrow: "↓", src: server, dst: client, floor: accepted.Add(serverFloorD * d)}
	downQ := make(chan event, queueDepth)
	go down.read(downQ)
	var both sync.WaitGroup
	both.Add(1)
	go func() { defer both.Done(); down.write(downQ) }()
	up.write(upQ)
	both.Wait()
}

// dialFar connects to the far side: at once, or with AcceptAtHandshake at
// accepted + 3d.
func (l *Link) dialFar(accepted time.Time) (*net.TCPConn, error) {
	if l.em.AcceptAtHandshake {
		t := time.NewTimer(time.Until(accepted.Add(clientFloorD * l.em.D)))
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
	return l.dial(l.Target)
}

func (l *Link) classified(k Kind, names []string) {
	l.countsMu.Lock()
	defer l.countsMu.Unlock()
	l.counts.Kinds[k]++
	if len(names) > 0 && l.counts.Naming == nil {
		l.counts.Naming = make(map[string]int64)
	}
	for _, n := range slices.Compact(slices.Sorted(slices.Values(names))) {
		l.counts.Naming[n]++
	}
}

// event is what one direction carries: bytes, or the end of the stream.
type event struct {
	at   time.Time // when it reached the link
	data []byte
	eof  bool // orderly half-close
	rst  bool // the stream broke: cut both sides
}

// describe says what ev carries, for the trace.
func (ev event) describe(arrow string) string {
	switch {
	case ev.data != nil:
		return fmt.Sprintf("%s %d B", arrow, len(ev.data))
	case ev.eof:
		return arrow + " eof"
	}
	return arrow + " rst"
}

// direction carries one way of a connection: a reader stamps what arrives
// and queues it, a writer delivers each event at max(at + d, floor).
type direction struct {
	em       *Emulator
	link     string // for the trace: the link's name
	arrow    string // and the direction, ↑ toward the server
	src, dst *net.TCPConn
	floor    time.Time
	onHead   func(Kind, []string) // nil: do not classify

	head []byte // the stream's first bytes, until classified
	done bool   // classified
}

// queueDepth bounds what one direction holds in flight (chunks of at
// most readSize): past it the reader stops reading and TCP pushes back.
const (
	queueDepth = 256
	readSize   = 32 << 10
)

func (dr *direction) read(q chan<- event) {
	defer close(q)
	buf := make([]byte, readSize)
	for {
		n, err := dr.src.Read(buf)
		at := time.Now()
		if n > 0 {
			data := append([]byte(nil), buf[:n]...)
			dr.observe(data)
			q <- event{at: at, data: data}
		}
		if err != nil {
			dr.observe(nil)
			q <- event{at: at, eof: errors.Is(err, io.EOF), rst: !errors.Is(err, io.EOF)}
			return
		}
	}
}

// observe classifies the connection once its first line (and for est,
// its list) is known; data is nil at the end of the stream.
func (dr *direction) observe(data []byte) {
	if dr.onHead == nil || dr.done {
		return
	}
	dr.head = append(dr.head, data[:min(len(data), maxHead-len(dr.head))]...)
	end := data == nil || len(dr.head) >= maxHead
	k, ok := classify(dr.head)
	if !ok && !end {
		return
	}
	var names []string
	if k == KindEst {
		var complete bool
		if names, complete = parseEst(dr.head); !complete && !end {
			return
		}
	}
	dr.done, dr.head = true, nil
	dr.onHead(k, names)
}

func (dr *direction) write(q <-chan event) {
	sleep, err := newSleeper()
	if err != nil {
		abort(dr.src)
		abort(dr.dst)
		drain(q)
		return
	}
	defer sleep.close()
	for ev := range q {
		due := ev.at.Add(dr.em.D)
		if due.Before(dr.floor) {
			due = dr.floor
		}
		sleep.until(due)
		dr.em.late(time.Since(due))
		if dr.em.Trace {
			dr.em.trace(dr.link, ev.describe(dr.arrow), ev.at)
		}
		switch {
		case ev.data != nil:
			if _, err := dr.dst.Write(ev.data); err != nil {
				// The far side is gone: so is the stream, both ways.
				abort(dr.src)
				abort(dr.dst)
				drain(q)
				return
			}
		case ev.eof:
			_ = dr.dst.CloseWrite()
		case ev.rst:
			abort(dr.dst)
			abort(dr.src)
		}
	}
}

// A sleeper waits until a delivery's time on a timerfd of its own, read
// through the runtime's netpoller. The runtime's timers wake a goroutine
// through epoll_wait's timeout, in whole milliseconds: on an idle machine,
// with nothing else waking the poller, every delivery came up to a
// millisecond late (671 µs on average, 0.034 RTT a chunk at d = 10 ms),
// which the fits charged to every hop. A timerfd firing is an event
// epoll returns at once, and the goroutine waits parked, holding no P: a
// sleep in nanosleep(2) held one, and with two Ps two sleeping writers
// kept every other goroutine of the emulator (its accepts) waiting for
// the runtime to take a P back, up to 10 ms.
type sleeper struct {
	fd   int
	file *os.File // the same descriptor, registered with the poller
}

func newSleeper() (*sleeper, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	return &sleeper{fd: fd, file: os.NewFile(uintptr(fd), "timerfd")}, nil
}

// until returns at t, or at once when t has passed.
func (s *sleeper) until(t time.Time) {
	wait := time.Until(t)
	if wait <= 0 {
		return
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(wait))}
	if err := unix.TimerfdSettime(s.fd, 0, &spec, nil); err != nil {
		time.Sleep(wait)
		return
	}
	var expirations [8]byte
	_, _ = s.file.Read(expirations[:])
}

func (s *sleeper) close() { _ = s.file.Close() }

// drain empties q so its reader, which ends once src is closed, is not
// left blocked on a full queue.
func drain(q <-chan event) {
	for range q {
	}
}

// abort closes c with a reset, as a broken stream ends.
func abort(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}
