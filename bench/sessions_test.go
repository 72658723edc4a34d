package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	_ "github.com/gunshu/caddy-gunshu/caddymodule"
	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// childEnv selects a child role: the memory benchmarks run the relay in a
// process of its own, so what they measure is the relay and nothing else.
const childEnv = "GUNSHU_BENCH_CHILD"

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		if err := runChild(role, os.Getenv("GUNSHU_BENCH_NEXT")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// stats is what a child reports of itself.
type stats struct {
	Heap       uint64 `json:"heap"`  // HeapInuse
	Stack      uint64 `json:"stack"` // StackInuse
	RSS        uint64 `json:"rss"`
	FDs        int    `json:"fds"`
	Goroutines int    `json:"goroutines"`
}

func measure() stats {
	runtime.GC()
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := stats{Heap: ms.HeapInuse, Stack: ms.StackInuse, Goroutines: runtime.NumGoroutine()}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseUint(f[1], 10, 64)
			s.RSS = pages * uint64(os.Getpagesize())
		}
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.FDs = len(fds)
	}
	return s
}

// runChild serves role on a loopback port, prints the address, answers
// "stats" lines on stdin with a JSON line, and exits at EOF.
func runChild(role, next string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	switch role {
	case "gunshu":
		r := &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Rand: pickFirst{}}
		go func() { _ = r.Serve(ln) }()
	case "splice":
		go acceptAll(ln, func(c net.Conn) { pipeTo(c.(*net.TCPConn), next, spliceCopy) })
	case "caddy":
		// A Caddy process whose layer4 server runs gunshu_relay, as a
		// relay operator would run it.
		addr := ln.Addr().String()
		ln.Close()
		cfg := fmt.Sprintf(`{"admin":{"disabled":true},"logging":{"logs":{"default":{"level":"ERROR"}}},
			"apps":{"layer4":{"servers":{"relay":{"listen":[%q],
			"routes":[{"handle":[{"handler":"gunshu_relay","allow":["127.0.0.0/8"]}]}]}}}}}`, addr)
		if err := caddy.Load([]byte(cfg), true); err != nil {
			return err
		}
		fmt.Println(addr)
		return answerStats()
	case "responder":
		rl := (&gunshu.Responder{}).Listen(ln, 0)
		go acceptAll(rl, serveEndpoint)
	case "plain":
		go acceptAll(ln, serveEndpoint)
	default:
		return fmt.Errorf("unknown child role %q", role)
	}
	fmt.Println(ln.Addr().String())
	return answerStats()
}

// answerStats answers "stats" lines on stdin with a JSON line until EOF.
func answerStats() error {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		b, _ := json.Marshal(measure())
		fmt.Println(string(b))
	}
	return nil
}

// child is a running child process; its first line is its address.
type child struct {
	*testkit.Child
	addr string
}

func startChild(tb testing.TB, role, next string) *child {
	tb.Helper()
	c := testkit.StartChild(tb, "^$", childEnv+"="+role, "GUNSHU_BENCH_NEXT="+next)
	return &child{Child: c, addr: c.First}
}

func (c *child) stats(tb testing.TB) stats {
	tb.Helper()
	if _, err := fmt.Fprintln(c.In, "stats"); err != nil {
		tb.Fatal(err)
	}
	if !c.Out.Scan() {
		tb.Fatal("child gave no stats")
	}
	var s stats
	if err := json.Unmarshal(c.Out.Bytes(), &s); err != nil {
		tb.Fatal(err)
	}
	// A child at its open-file limit cannot open /proc/self/fd: count
	// its descriptors from here.
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.Cmd.Process.Pid)); err == nil {
		s.FDs = len(fds)
	}
	return s
}

// openSessions opens count idle sessions through dial and pings each
// end to end once, so every relay has entered forwarding in both
// directions. It stops at the first failure and returns what it opened.
func openSessions(count int, dial func() (net.Conn, error)) ([]net.Conn, error) {
	conns := make([]net.Conn, 0, count)
	var pong [1]byte
	for range count {
		c, err := dial()
		if err != nil {
			return conns, err
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(pong[:]); err != nil {
			c.Close()
			return conns, err
		}
		_ = c.SetReadDeadline(time.Time{})
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// BenchmarkIdleSessions holds 1,000 idle sessions through one relay run
// in a child process and reports what each session costs that process:
// heap+stack (Go's own accounting), resident memory, descriptors and
// goroutines. Run it with -benchtime=1x: one op is the whole measurement.
func BenchmarkIdleSessions(b *testing.B) {
	const sessions = 1000
	for _, role := range []string{"gunshu", "splice"} {
		b.Run(role, func(b *testing.B) {
			for range b.N {
				n := &network{tb: b}
				var dial func() (net.Conn, error)
				var relay *child
				if role == "gunshu" {
					responder := n.gunshuEndpoint()
					relay = startChild(b, role, "")
					est := "est\n1\n" + responder + "\n"
					dial = func() (net.Conn, error) { return gunshuDial(relay.addr, est, []byte{opHold}) }
				} else {
					server := n.plainEndpoint()
					relay = startChild(b, role, server)
					dial = func() (net.Conn, error) { return dialPlain(relay.addr, []byte{opHold}) }
				}
				// Warm up: one session, so lazily made state (pools, the
				// poller) is in the baseline.
				warm, err := openSessions(1, dial)
				closeAll(warm)
				if err != nil {
					b.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond)
				before := relay.stats(b)
				conns, err := openSessions(sessions, dial)
				if err != nil {
					b.Fatalf("after %d sessions: %v", len(conns), err)
				}
				time.Sleep(200 * time.Millisecond)
				after := relay.stats(b)
				closeAll(conns)
				n.stop()
				per := func(a, z uint64) float64 { return (float64(z) - float64(a)) / sessions }
				b.ReportMetric(per(before.Heap+before.Stack, after.Heap+after.Stack), "heap+stack-B/session")
				b.ReportMetric(per(before.Heap, after.Heap), "heap-B/session")
				b.ReportMetric(per(before.Stack, after.Stack), "stack-B/session")
				b.ReportMetric(per(before.RSS, after.RSS), "rss-B/session")
				b.ReportMetric(float64(after.FDs-before.FDs)/sessions, "fds/session")
				b.ReportMetric(float64(after.Goroutines-before.Goroutines)/sessions, "goroutines/session")
			}
		})
	}
}

// gunshuDial builds a one-relay route by hand: est, ok, forward+payload.
func gunshuDial(relay, est string, payload []byte) (net.Conn, error) {
	c, err := dialPlain(relay, []byte(est))
	if err != nil {
		return nil, err
	}
	var ok [3]byte
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(ok[:]); err != nil || string(ok[:]) != "ok\n" {
		c.Close()
		return nil, fmt.Errorf("route: %q, %v", ok, err)
	}
	if _, err := c.Write(append([]byte("forward\n"), payload...)); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// BenchmarkCapacity opens up to GUNSHU_BENCH_SESSIONS (default 10,000)
// idle sessions through one relay process, the responder in another, and
// reports how many the relay held and its descriptors per session. A
// relay needs two sockets per session, so under the 20,000-descriptor
// limit one process tops out just short of 10,000. Run with
// -benchtime=1x.
func BenchmarkCapacity(b *testing.B) {
	target := 10000
	if s := os.Getenv("GUNSHU_BENCH_SESSIONS"); s != "" {
		target, _ = strconv.Atoi(s)
	}
	for range b.N {
		responder := startChild(b, "responder", "")
		relay := startChild(b, "gunshu", "")
		est := "est\n1\n" + responder.addr + "\n"
		before := relay.stats(b)
		conns, err := openSessions(target, func() (net.Conn, error) { return gunshuDial(relay.addr, est, []byte{opHold}) })
		after := relay.stats(b)
		held := len(conns)
		// The relay must still serve once sessions end.
		closeAll(conns[:min(held, 100)])
		time.Sleep(200 * time.Millisecond)
		more, err2 := openSessions(10, func() (net.Conn, error) { return gunshuDial(relay.addr, est, []byte{opHold}) })
		closeAll(more)
		closeAll(conns[min(held, 100):])
		b.ReportMetric(float64(held), "sessions")
		b.ReportMetric(float64(after.FDs-before.FDs)/float64(max(held, 1)), "fds/session")
		b.ReportMetric(float64(after.FDs), "relay-fds")
		b.ReportMetric(float64(after.Heap+after.Stack-before.Heap-before.Stack)/float64(max(held, 1)), "heap+stack-B/session")
		if err != nil {
			b.Logf("stopped after %d sessions: %v", held, err)
		}
		if err2 != nil {
			b.Errorf("the relay no longer serves after running out of descriptors: %v", err2)
		}
	}
}
