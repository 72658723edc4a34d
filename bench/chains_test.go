// Package bench measures Gunshu relays against minimal Go relays on
// loopback: forwarding throughput in both directions, route setup per
// hop, CPU per GiB per hop, and the memory and descriptors an idle
// relayed session holds. run.sh runs it and prints the ratios.
package bench

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// pickFirst makes a relay extend every route to the first entry of its
// list (IntN of a source stuck at 1<<32 is 0 for any list length), so a
// benchmark fixes the exact number of relays of a route.
type pickFirst struct{}

func (pickFirst) Uint64() uint64 { return 1 << 32 }

// network is everything one benchmark started; stop ends it all.
type network struct {
	tb    testing.TB
	stops []func()
}

func (n *network) listen() net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		n.tb.Fatal(err)
	}
	return ln
}

// serve runs accept on ln in the background until stop.
func (n *network) serve(ln net.Listener, run func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		run()
	}()
	n.stops = append(n.stops, func() { ln.Close(); <-done })
}

func (n *network) stop() {
	for i := len(n.stops) - 1; i >= 0; i-- {
		n.stops[i]()
	}
}

// The endpoint's operations, chosen by the first byte of a stream.
const (
	opUpload   = 'u' // read to EOF, answer the byte count (8 bytes)
	opDownload = 'd' // read a count (8 bytes), send that many bytes
	opPing     = 'p' // answer one byte and close
	opHold     = 'h' // answer one byte, then wait for EOF: an idle session
	opEcho     = 'e' // send every byte back until EOF
)

const chunkSize = 1 << 20

var chunk = make([]byte, chunkSize)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// serveEndpoint is the application behind every chain: the same code for
// a plain TCP server and for a Gunshu responder's streams.
func serveEndpoint(c net.Conn) {
	defer c.Close()
	var op [1]byte
	if _, err := io.ReadFull(c, op[:]); err != nil {
		return
	}
	switch op[0] {
	case opUpload:
		bufp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bufp)
		var total uint64
		for {
			k, err := c.Read(*bufp)
			total += uint64(k)
			if err != nil {
				break
			}
		}
		_ = binary.Write(c, binary.BigEndian, total)
	case opDownload:
		var n uint64
		if binary.Read(c, binary.BigEndian, &n) != nil {
			return
		}
		for n > 0 {
			k := min(n, chunkSize)
			if _, err := c.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	case opEcho:
		bufp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bufp)
		if _, err := io.CopyBuffer(writerOnly{c}, readerOnly{c}, (*bufp)[:32<<10]); err == nil {
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
		}
	case opHold:
		if _, err := c.Write(op[:]); err == nil {
			_, _ = c.Read(op[:])
		}
	case opPing:
		// The server closes first, so the dialing side of every hop
		// sees the FIN first and no client port waits in TIME_WAIT.
		_, _ = c.Write(op[:])
	}
}

// plainEndpoint serves the endpoint on plain TCP.
func (n *network) plainEndpoint() string {
	ln := n.listen()
	n.serve(ln, func() { acceptAll(ln, serveEndpoint) })
	return ln.Addr().String()
}

// gunshuEndpoint serves the endpoint behind a Gunshu responder.
func (n *network) gunshuEndpoint() string {
	ln := n.listen()
	rl := (&gunshu.Responder{}).Listen(ln, 0)
	n.serve(ln, func() { acceptAll(rl, serveEndpoint) })
	n.stops = append(n.stops, func() { rl.Close(); rl.Wait() })
	return ln.Addr().String()
}

func acceptAll(ln net.Listener, handle func(net.Conn)) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			handle(c)
		}()
	}
}

// gunshuRelayMode starts a Gunshu relay that always picks the first
// entry; waitForOK makes it a 2003 relay that holds upstream's bytes
// until its next hop's ok (the relays before cut-through).
func (n *network) gunshuRelayMode(waitForOK bool) string {
	ln := n.listen()
	r := &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Rand: pickFirst{}, WaitForOK: waitForOK}
	n.serve(ln, func() { _ = r.Serve(ln) })
	n.stops = append(n.stops, func() { _ = r.Close() })
	return ln.Addr().String()
}

// copyFunc moves src to dst until EOF.
type copyFunc func(dst, src *net.TCPConn) error

// spliceCopy is what a minimal Go relay writes: io.Copy between two TCP
// connections, which the runtime turns into splice(2).
func spliceCopy(dst, src *net.TCPConn) error {
	_, err := io.Copy(dst, src)
	return err
}

type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }

// bufferCopy copies through a 32 KiB user-space buffer, as relays
// without splice do.
func bufferCopy(dst, src *net.TCPConn) error {
	bufp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bufp)
	_, err := io.CopyBuffer(writerOnly{dst}, readerOnly{src}, (*bufp)[:32<<10])
	return err
}

// minimalRelay starts a relay with no protocol: it connects every
// accepted connection to next and copies both ways, passing half-closes.
func (n *network) minimalRelay(next string, copyFn copyFunc) string {
	ln := n.listen()
	n.serve(ln, func() { acceptAll(ln, func(c net.Conn) { pipeTo(c.(*net.TCPConn), next, copyFn) }) })
	return ln.Addr().String()
}

func pipeTo(up *net.TCPConn, next string, copyFn copyFunc) {
	defer up.Close()
	c, err := net.Dial("tcp", next)
	if err != nil {
		return
	}
	down := c.(*net.TCPConn)
	defer down.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if copyFn(down, up) == nil {
			_ = down.CloseWrite()
		}
	}()
	if copyFn(up, down) == nil {
		_ = up.CloseWrite()
	}
	<-done
}

// chain is one way to reach the endpoint: dial returns a connection on
// which first was sent and whose next bytes come from the endpoint.
type chain struct {
	name string
	hops int
	dial func(first []byte) (net.Conn, error)
}

func directChain(n *network) chain {
	addr := n.plainEndpoint()
	return chain{name: "direct", dial: func(first []byte) (net.Conn, error) { return dialPlain(addr, first) }}
}

func dialPlain(addr string, first []byte) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(first); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func minimalChain(n *network, name string, hops int, copyFn copyFunc) chain {
	next := n.plainEndpoint()
	for range hops {
		next = n.minimalRelay(next, copyFn)
	}
	return chain{name: fmt.Sprintf("%s%d", name, hops), hops: hops, dial: func(first []byte) (net.Conn, error) {
		return dialPlain(next, first)
	}}
}

// gunshuChain builds relays r1 … rk in front of a responder; the client
// speaks the protocol itself (est to r1, ok, forward) so the chain's
// length is exact. hops 0 is the responder reached directly.
func gunshuChain(n *network, hops int) chain { return gunshuChainMode(n, hops, false, false) }

// gunshuPipelinedChain is gunshuChain with a client that sends est,
// forward and its first bytes at once and reads ok afterwards. Relays
// and responders read lines in order, so forward waits in their buffers
// and follows the ok without another round trip.
func gunshuPipelinedChain(n *network, hops int) chain { return gunshuChainMode(n, hops, true, false) }

// gunshu2003Chain is gunshuPipelinedChain through relays that wait for
// ok before they pass anything on, as all did before cut-through.
func gunshu2003Chain(n *network, hops int) chain {
	c := gunshuChainMode(n, hops, true, true)
	c.name = fmt.Sprintf("gunshu%dw", hops)
	return c
}

func gunshuChainMode(n *network, hops int, pipelined, waitForOK bool) chain {
	responder := n.gunshuEndpoint()
	relays := make([]string, hops)
	for i := range relays {
		relays[i] = n.gunshuRelayMode(waitForOK)
	}
	first := responder
	list := []string{responder}
	if hops > 0 {
		first = relays[0]
		list = append(relays[1:hops:hops], responder)
	}
	est := "est\n" + fmt.Sprint(len(list)) + "\n" + strings.Join(list, "\n") + "\n"
	if pipelined {
		return chain{name: fmt.Sprintf("gunshu%dp", hops), hops: hops, dial: func(payload []byte) (net.Conn, error) {
			c, err := dialPlain(first, append([]byte(est+"forward\n"), payload...))
			if err != nil {
				return nil, err
			}
			var ok [3]byte
			if _, err := io.ReadFull(c, ok[:]); err != nil || string(ok[:]) != "ok\n" {
				c.Close()
				return nil, fmt.Errorf("route: %q, %v", ok, err)
			}
			return c, nil
		}}
	}
	return chain{name: fmt.Sprintf("gunshu%d", hops), hops: hops, dial: func(payload []byte) (net.Conn, error) {
		c, err := dialPlain(first, []byte(est))
		if err != nil {
			return nil, err
		}
		var ok [3]byte
		if _, err := io.ReadFull(c, ok[:]); err != nil || string(ok[:]) != "ok\n" {
			c.Close()
			return nil, fmt.Errorf("route: %q, %v", ok, err)
		}
		if _, err := c.Write(append([]byte("forward\n"), payload...)); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}}
}
