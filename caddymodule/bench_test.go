package caddymodule

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// The relay chain benchmark: the same bulk transfers through
//
//	direct    client → target
//	splice    3 minimal Go relays, io.Copy between *net.TCPConn (splice)
//	copy32k   3 minimal Go relays copying through 32 KiB buffers
//	l4proxy   3 caddy-l4 servers chained with the stock proxy handler
//	gunshu    3 caddy-l4 servers with gunshu_relay (the est route is
//	          forced through all three by their dial policies)
//
// all in one run. bench/relay-chain prints the ratios.

const benchPayload = 32 << 20

// target modes, chosen by the first byte the client sends.
const (
	modeUpload   = 'U' // read to EOF, answer the count (8 bytes)
	modeDownload = 'D' // read a count (8 bytes), send that many bytes
	modeIdle     = 'I' // answer one byte, then wait for EOF
)

var benchBuf = make([]byte, 256<<10)

// serveTarget is the application at the end of every chain.
func serveTarget(c net.Conn) {
	defer c.Close()
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	switch mode[0] {
	case modeUpload:
		buf := make([]byte, 256<<10)
		n, _ := io.CopyBuffer(io.Discard, readerOnly{c}, buf)
		_ = binary.Write(c, binary.BigEndian, n)
	case modeDownload:
		var n int64
		if binary.Read(c, binary.BigEndian, &n) != nil {
			return
		}
		for n > 0 {
			w, err := c.Write(benchBuf[:min(n, int64(len(benchBuf)))])
			if err != nil {
				return
			}
			n -= int64(w)
		}
	case modeIdle:
		if _, err := c.Write(mode[:]); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c)
	}
}

type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }

func serveAll(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go handle(c)
	}
}

// plainRelay is the minimal relay: accept, dial next, copy both ways.
func plainRelay(tb testing.TB, next string, splice bool) string {
	ln := testkit.Listen(tb)
	go serveAll(ln, func(c net.Conn) {
		defer c.Close()
		down, err := net.Dial("tcp", next)
		if err != nil {
			return
		}
		defer down.Close()
		pipe := func(dst, src net.Conn) {
			if splice {
				_, _ = io.Copy(dst, src)
			} else {
				_, _ = io.CopyBuffer(writerOnly{dst}, readerOnly{src}, make([]byte, 32<<10))
			}
			_ = dst.(*net.TCPConn).CloseWrite()
		}
		var wg sync.WaitGroup
		wg.Go(func() { pipe(down, c) })
		pipe(c, down)
		wg.Wait()
	})
	return ln.Addr().String()
}

// chain is one way to reach the target.
type chain struct {
	name string
	dial func() (net.Conn, error)
}

type benchNet struct {
	chains []chain
}

func plainDial(addr string) func() (net.Conn, error) {
	return func() (net.Conn, error) { return net.Dial("tcp", addr) }
}

// setupBenchNet starts the targets, the plain relays and one Caddy with
// the caddy-l4 proxy chain and the gunshu relay chain.
func setupBenchNet(tb testing.TB) *benchNet {
	tb.Helper()
	plainTarget := testkit.Listen(tb)
	go serveAll(plainTarget, serveTarget)
	target := plainTarget.Addr().String()

	// The gunshu chain ends at a responder on 127.0.0.4; each relay may
	// dial only the next one's address, so the only route that answers
	// ok is r1 → r2 → r3 → responder.
	respLn := testkit.ListenOn(tb, "127.0.0.4:0")
	respL := (&gunshu.Responder{}).Listen(respLn, 0)
	tb.Cleanup(func() { respL.Close(); respL.Wait() })
	go serveAll(respL, serveTarget)
	responder := respLn.Addr().String()

	r := []string{"127.0.0.1:" + testkit.FreePort(tb), "127.0.0.2:" + testkit.FreePort(tb), "127.0.0.3:" + testkit.FreePort(tb)}
	allowNext := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	p := []string{"127.0.0.1:" + testkit.FreePort(tb), "127.0.0.1:" + testkit.FreePort(tb), "127.0.0.1:" + testkit.FreePort(tb)}
	pNext := []string{p[1], p[2], target}

	var servers []string
	for i := range 3 {
		servers = append(servers, fmt.Sprintf(`"gunshu%d": {"listen": [%q], "routes": [
			{"match": [{"gunshu": {"commands": ["est", "test"]}}],
			 "handle": [{"handler": "gunshu_relay", "allow": [%q]}]}]}`, i, r[i], allowNext[i]))
		servers = append(servers, fmt.Sprintf(`"proxy%d": {"listen": [%q], "routes": [
			{"handle": [{"handler": "proxy", "upstreams": [{"dial": [%q]}]}]}]}`, i, p[i], pNext[i]))
	}
	cfg := `{"admin": {"disabled": true, "config": {"persist": false}},
		"logging": {"logs": {"default": {"level": "ERROR"}}},
		"apps": {"layer4": {"servers": {` + strings.Join(servers, ",") + `}}}}`
	runConfig(tb, []byte(cfg))

	est := fmt.Appendf(nil, "est\n3\n%s\n%s\n%s\n", r[1], r[2], responder)
	return &benchNet{chains: []chain{
		{"direct", plainDial(target)},
		{"splice", plainDial(plainRelay(tb, plainRelay(tb, plainRelay(tb, target, true), true), true))},
		{"copy32k", plainDial(plainRelay(tb, plainRelay(tb, plainRelay(tb, target, false), false), false))},
		{"l4proxy", plainDial(p[0])},
		{"gunshu", func() (net.Conn, error) { return gunshuRoute(r[0], est) }},
	}}
}

// gunshuRoute opens routes until one answers ok (the relays' policies
// refuse every other path) and switches it to forward mode.
func gunshuRoute(first string, est []byte) (net.Conn, error) {
	for range 200 {
		c, err := net.Dial("tcp", first)
		if err != nil {
			return nil, err
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(est); err != nil {
			c.Close()
			return nil, err
		}
		line, err := bufio.NewReaderSize(c, 16).ReadString('\n')
		if err == nil && line == "ok\n" {
			_ = c.SetDeadline(time.Time{})
			if _, err := c.Write([]byte("forward\n")); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
		c.Close()
	}
	return nil, fmt.Errorf("no route through all three relays")
}

func upload(c net.Conn) error {
	defer c.Close()
	if _, err := c.Write([]byte{modeUpload}); err != nil {
		return err
	}
	for sent := 0; sent < benchPayload; sent += len(benchBuf) {
		if _, err := c.Write(benchBuf); err != nil {
			return err
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	var n int64
	if err := binary.Read(c, binary.BigEndian, &n); err != nil {
		return err
	}
	if n != benchPayload {
		return fmt.Errorf("target got %d bytes, want %d", n, benchPayload)
	}
	return nil
}

func download(c net.Conn) error {
	defer c.Close()
	req := make([]byte, 9)
	req[0] = modeDownload
	binary.BigEndian.PutUint64(req[1:], benchPayload)
	if _, err := c.Write(req); err != nil {
		return err
	}
	buf := make([]byte, 256<<10)
	n, err := io.CopyBuffer(io.Discard, readerOnly{c}, buf)
	if err != nil {
		return err
	}
	if n != benchPayload {
		return fmt.Errorf("got %d bytes, want %d", n, benchPayload)
	}
	return nil
}

// BenchmarkRelayChain moves benchPayload bytes per op up and down each
// chain; compare MB/s between chains of the same run.
func BenchmarkRelayChain(b *testing.B) {
	n := setupBenchNet(b)
	for _, dir := range []struct {
		name string
		move func(net.Conn) error
	}{{"up", upload}, {"down", download}} {
		for _, ch := range n.chains {
			b.Run(dir.name+"/"+ch.name, func(b *testing.B) {
				b.SetBytes(benchPayload)
				for b.Loop() {
					b.StopTimer() // route setup is not throughput
					c, err := ch.dial()
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if err := dir.move(c); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkRelayChainIdleMemory opens idleSessions sessions through each
// chain and reports the memory they hold per relayed session (one
// session at one relay), beyond what the same number of direct
// connections holds.
func BenchmarkRelayChainIdleMemory(b *testing.B) {
	const idleSessions = 300
	n := setupBenchNet(b)
	held := func(ch chain) float64 {
		before := inUse()
		conns := make([]net.Conn, 0, idleSessions)
		for range idleSessions {
			c, err := ch.dial()
			if err != nil {
				b.Fatal(err)
			}
			// One byte there and back: every hop is in forward mode.
			var one [1]byte
			if _, err := c.Write([]byte{modeIdle}); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, one[:]); err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		time.Sleep(100 * time.Millisecond)
		after := inUse()
		for _, c := range conns {
			c.Close()
		}
		time.Sleep(200 * time.Millisecond)
		return float64(after) - float64(before)
	}
	for b.Loop() {
		direct := held(n.chains[0])
		for _, ch := range n.chains[1:] {
			perSession := (held(ch) - direct) / (3 * idleSessions)
			b.ReportMetric(perSession/1024, "KiB/relayed-session-"+ch.name)
		}
	}
}

// inUse is the heap and stack memory in use after a collection.
func inUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// BenchmarkRelayChainRatio runs the chains in turn, round after round, so
// that background load hits them alike, and reports each chain's
// throughput as a ratio to the splice chain's, up and down: the median of
// the rounds' ratios, which a burst of load in one round cannot move.
func BenchmarkRelayChainRatio(b *testing.B) {
	n := setupBenchNet(b)
	dirs := []struct {
		name string
		move func(net.Conn) error
	}{{"up", upload}, {"down", download}}
	ratios := make(map[string][]float64)
	for b.Loop() {
		for _, dir := range dirs {
			took := make(map[string]time.Duration, len(n.chains))
			for _, ch := range n.chains {
				c, err := ch.dial()
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now() // route setup is not throughput
				if err := dir.move(c); err != nil {
					b.Fatalf("%s %s: %v", dir.name, ch.name, err)
				}
				took[ch.name] = time.Since(start)
			}
			for _, ch := range n.chains {
				key := dir.name + "-" + ch.name
				ratios[key] = append(ratios[key], float64(took["splice"])/float64(took[ch.name]))
			}
		}
	}
	for _, dir := range dirs {
		for _, ch := range n.chains {
			if ch.name != "splice" {
				b.ReportMetric(median(ratios[dir.name+"-"+ch.name]), "x-splice-"+dir.name+"-"+ch.name)
			}
		}
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
