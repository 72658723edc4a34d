package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// The link's delays are checked as lower bounds only: a loaded machine
// can make any delivery later, never earlier.

const testD = 20 * time.Millisecond

// serveOne serves handle on a fresh loopback listener until the test
// ends and returns its address.
func serveOne(t *testing.T, handle func(c *net.TCPConn)) string {
	t.Helper()
	ln := testkit.Listen(t)
	testkit.Serve(t, ln, func(c net.Conn) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		handle(c.(*net.TCPConn))
	})
	return ln.Addr().String()
}

func newTestLink(t *testing.T, target string) (*Emulator, *Link) {
	t.Helper()
	em := &Emulator{D: testD}
	l, err := em.NewLink("test", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return em, l
}

func dialTest(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func atLeast(t *testing.T, what string, got, floor time.Duration) {
	t.Helper()
	if got < floor {
		t.Errorf("%s after %v, the model allows no less than %v", what, got, floor)
	}
}

func TestLinkHandshakeAndRoundTrips(t *testing.T) {
	_, l := newTestLink(t, testkit.EchoServer(t))
	start := time.Now()
	c := dialTest(t, l.Addr())
	buf := make([]byte, 1)
	for i := range 3 {
		sent := time.Now()
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil || buf[0] != byte(i) {
			t.Fatalf("echo %d: %v %v", i, buf, err)
		}
		if i == 0 {
			// SYN, SYN-ACK, ACK with the byte (3d), then the echo (d).
			atLeast(t, "the first echo", time.Since(start), 4*testD)
		} else {
			atLeast(t, "an echo", time.Since(sent), 2*testD)
		}
	}
	closed := time.Now()
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("after the half-close: %d bytes, %v; want the server's half-close", n, err)
	}
	atLeast(t, "the server's half-close, answering ours,", time.Since(closed), 2*testD)
}

func TestLinkServerSpeaksFirst(t *testing.T) {
	addr := serveOne(t, func(c *net.TCPConn) {
		_, _ = c.Write([]byte("hello"))
		_, _ = io.Copy(io.Discard, c)
	})
	_, l := newTestLink(t, addr)
	start := time.Now()
	c := dialTest(t, l.Addr())
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v", got, err)
	}
	// The server accepts once the handshake is done (3d); its byte needs d.
	atLeast(t, "the server's first byte", time.Since(start), 4*testD)
}

func TestLinkAcceptAtHandshake(t *testing.T) {
	accepted := make(chan time.Time, 1)
	addr := serveOne(t, func(c *net.TCPConn) {
		accepted <- time.Now()
		_, _ = io.Copy(c, c)
	})
	em := &Emulator{D: testD, AcceptAtHandshake: true}
	l, err := em.NewLink("test", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	start := time.Now()
	c := dialTest(t, l.Addr())
	if _, err := c.Write([]byte("x")); err != nil { // sent before the far side exists
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil || buf[0] != 'x' {
		t.Fatalf("echo %q, %v", buf, err)
	}
	atLeast(t, "the far side's accept", (<-accepted).Sub(start), 3*testD)
	atLeast(t, "the echo", time.Since(start), 4*testD)
}

func TestLinkCarriesBytesIntactInOrder(t *testing.T) {
	_, l := newTestLink(t, testkit.EchoServer(t))
	c := dialTest(t, l.Addr())
	payload := make([]byte, 4<<20) // more than the queue holds: the link must push back, not drop
	rnd := rand.New(rand.NewPCG(7, 7))
	for i := range payload {
		payload[i] = byte(rnd.Uint32())
	}
	go func() {
		_, _ = c.Write(payload)
		_ = c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatalf("echoed %d bytes that differ from the %d sent", len(got), len(payload))
	}
}

func TestLinkPassesResetOn(t *testing.T) {
	addr := serveOne(t, func(c *net.TCPConn) {
		_, _ = c.Read(make([]byte, 1))
		abort(c)
	})
	_, l := newTestLink(t, addr)
	c := dialTest(t, l.Addr())
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("read after the server's reset: %v, want a reset", err)
	}
}

func TestLinkCountsRoutesByTheirList(t *testing.T) {
	em, l := newTestLink(t, testkit.EchoServer(t))
	before := em.Snapshot()
	send := func(chunks ...string) {
		c := dialTest(t, l.Addr())
		for _, s := range chunks {
			if _, err := c.Write([]byte(s)); err != nil {
				t.Fatal(err)
			}
		}
		_ = c.CloseWrite()
		if _, err := io.ReadAll(c); err != nil {
			t.Fatal(err)
		}
	}
	send("est\n2\n127.0.0.1:1\nresp:80\n")
	send("es", "t\r\n1\n", "resp:", "80\n", "forward\n") // split anywhere, CRLF
	send("est\n1\nother:80\n")
	send("test\n")
	send("GET / HTTP/1.1\r\n\r\n")
	send("\x05\x01\x00")
	after := em.Snapshot()
	for _, tc := range []struct {
		name  string
		count Counter
		want  int64
	}{
		{"all", AllConns, 6},
		{"est", EstConns, 3},
		{"est naming resp:80", EstNaming("resp:80"), 2},
		{"est naming other:80", EstNaming("other:80"), 1},
		{"est naming nobody", EstNaming("nobody:1"), 0},
	} {
		if got := before.Delta(after, l, tc.count); got != tc.want {
			t.Errorf("%s: %d connections, want %d (%s)", tc.name, got, tc.want, before.String(after))
		}
	}
	if got := after[l].Kinds; got != [numKinds]int64{KindNone: 1, KindEst: 3, KindTest: 1, KindOther: 1} {
		t.Errorf("kinds %v", got)
	}
}

func TestParseEst(t *testing.T) {
	for _, tc := range []struct {
		head     string
		names    []string
		complete bool
	}{
		{"est\n", nil, false},
		{"est\n2\na:1\n", nil, false},
		{"est\n2\na:1\nb:2", nil, false},
		{"est\n2\na:1\n b:2 \r\nforward\n", []string{"a:1", "b:2"}, true},
		{"est\n0\n", nil, true},
		{"est\nmany\n", nil, true},
	} {
		names, complete := parseEst([]byte(tc.head))
		if !slices.Equal(names, tc.names) || complete != tc.complete {
			t.Errorf("parseEst(%q) = %q, %v; want %q, %v", tc.head, names, complete, tc.names, tc.complete)
		}
	}
}

func TestMinRelayChainPassesHalfClose(t *testing.T) {
	r2, err := StartMinRelay(testkit.EchoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	r1, err := StartMinRelay(r2.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	c := dialTest(t, r1.Addr())
	msg := bytes.Repeat([]byte("gunshu "), 10000)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo through two minimal relays: %d bytes, %v", len(got), err)
	}
}
