package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// relayPort is the port of every simulated relay: each has an IP address
// of its own, so they all use the same port.
const relayPort = 7000

// relayIP is relay i's loopback address, 127.A.B.C with C in 1..8: eight
// relays per /24, the default max_per_network, and one per address, under
// the default max_per_ip.
func relayIP(i int) netip.Addr {
	network := i / 8
	return netip.AddrFrom4([4]byte{127, byte(1 + network/256), byte(network % 256), byte(1 + i%8)})
}

func relayAddr(i int) string { return netip.AddrPortFrom(relayIP(i), relayPort).String() }

// relayChild runs the relays of one child process. It reads commands on
// stdin ("start <i>", "join <i>", "kill <i>") and writes events on stdout:
//
//	T <i> <unix ns>                      a patrol test answered
//	R <i> <unix ns> <latency ns> <ok>    a reg exchange
//
// A relay answers test itself (to see patrol) and hands everything else
// to a gunshu.Relay of its own, so routes through it are real ones.
func relayChild(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: scale relays <managers,comma-separated> <register interval>")
	}
	c := &child{
		managers: strings.Split(args[0], ","),
		relays:   make(map[int]*simRelay),
		out:      bufio.NewWriterSize(os.Stdout, 64<<10),
	}
	var err error
	if c.interval, err = time.ParseDuration(args[1]); err != nil {
		return err
	}
	go c.flushLoop()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		verb, num, _ := strings.Cut(in.Text(), " ")
		i, err := strconv.Atoi(num)
		if err != nil {
			return fmt.Errorf("bad command %q", in.Text())
		}
		switch verb {
		case "start", "join":
			c.start(i, verb == "join")
		case "kill":
			c.kill(i)
		}
	}
	return nil // stdin closed: the bench is over
}

type child struct {
	managers []string
	interval time.Duration

	mu     sync.Mutex
	relays map[int]*simRelay
	outMu  sync.Mutex
	out    *bufio.Writer
}

type simRelay struct {
	index    int
	ln       net.Listener
	relay    *gunshu.Relay // its own: a relay refuses connections it dialed itself
	stop     chan struct{}
	verifies atomic.Int32 // reg exchanges in flight: a test now is the verification
}

func (c *child) emit(format string, a ...any) {
	c.outMu.Lock()
	fmt.Fprintf(c.out, format, a...)
	c.outMu.Unlock()
}

func (c *child) flushLoop() {
	for range time.Tick(200 * time.Millisecond) {
		c.outMu.Lock()
		err := c.out.Flush()
		c.outMu.Unlock()
		if err != nil {
			os.Exit(0) // the bench went away
		}
	}
}

func (c *child) start(i int, now bool) {
	ln, err := net.Listen("tcp", relayAddr(i))
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay", i, err)
		return
	}
	r := &simRelay{index: i, ln: ln, stop: make(chan struct{}),
		relay: &gunshu.Relay{Policy: gunshu.Policy{Allow: []string{"127.0.0.0/8"}}}}
	c.mu.Lock()
	c.relays[i] = r
	c.mu.Unlock()
	go c.accept(r)
	go c.register(r, now)
}

func (c *child) kill(i int) {
	c.mu.Lock()
	r := c.relays[i]
	delete(c.relays, i)
	c.mu.Unlock()
	if r != nil {
		close(r.stop)
		r.ln.Close()
	}
}

func (c *child) accept(r *simRelay) {
	for {
		conn, err := r.ln.Accept()
		if err != nil {
			select {
			case <-r.stop:
				return
			default:
			}
			time.Sleep(50 * time.Millisecond) // out of fds: let some close
			continue
		}
		go c.serve(r, conn)
	}
}

// serve reads the first line: test is answered here, the rest goes to the
// gunshu.Relay with what was read.
func (c *child) serve(r *simRelay, conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 0, 64)
	var chunk [64]byte
	for !strings.Contains(string(buf), "\n") && len(buf) < 512 {
		n, err := conn.Read(chunk[:])
		buf = append(buf, chunk[:n]...)
		if err != nil {
			conn.Close()
			return
		}
	}
	if strings.HasPrefix(string(buf), "test\n") {
		_, _ = conn.Write([]byte("ok\n"))
		conn.Close()
		if r.verifies.Load() == 0 {
			c.emit("T %d %d\n", r.index, time.Now().UnixNano())
		}
		return
	}
	_ = conn.SetDeadline(time.Time{})
	_ = r.relay.ServeBuffered(conn, buf)
}

// register sends reg from the relay's own address to its manager: first
// at once for a joining relay, at a random point of one interval for the
// first ones (the network comes up over a minute), then every interval
// ± 10 %.
func (c *child) register(r *simRelay, now bool) {
	manager := c.managers[r.index%len(c.managers)]
	var wait time.Duration
	if !now {
		wait = time.Duration(rand.Int64N(int64(c.interval)))
	}
	for {
		select {
		case <-r.stop:
			return
		case <-time.After(wait):
		}
		start := time.Now()
		r.verifies.Add(1)
		err := c.reg(r, manager)
		r.verifies.Add(-1)
		ok := 0
		if err == nil {
			ok = 1
		}
		c.emit("R %d %d %d %d\n", r.index, start.UnixNano(), time.Since(start).Nanoseconds(), ok)
		wait = c.interval*9/10 + time.Duration(rand.Int64N(int64(c.interval)/5))
	}
}

func (c *child) reg(r *simRelay, manager string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: relayIP(r.index).AsSlice()}}
	conn, err := d.DialContext(ctx, "tcp", manager)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if _, err := fmt.Fprintf(conn, "reg\n%s\n", relayAddr(r.index)); err != nil {
		return err
	}
	reply, err := io.ReadAll(io.LimitReader(conn, 64))
	if err != nil {
		return err
	}
	if string(reply) != "ok\n" {
		return fmt.Errorf("reg answered %q", reply)
	}
	return nil
}
