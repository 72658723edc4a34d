package gunshu_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// firstEntry makes a relay extend every route to the first entry of its
// list (IntN of a source stuck at 1<<32 is 0), so a test fixes the path.
type firstEntry struct{}

func (firstEntry) Uint64() uint64 { return 1 << 32 }

// fixedRelay serves a relay that always picks the first entry of its list.
func fixedRelay(t testing.TB, waitForOK bool, obs gunshu.Observer, tm gunshu.Timeouts) string {
	t.Helper()
	ln := testkit.Listen(t)
	r := &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Rand: firstEntry{}, WaitForOK: waitForOK, Observer: obs, Timeouts: tm}
	r.Self = []string{ln.Addr().String()}
	return testnet.ServeRelayOn(t, r, ln)
}

// digestResponder is a responder that reads each stream to its end and
// answers the SHA-256 of what it received; every stream's bytes are also
// counted in received.
func digestResponder(t testing.TB, received *atomic.Int64) string {
	return testnet.AppResponder(t, func(c net.Conn) {
		h := sha256.New()
		n, _ := io.Copy(h, c)
		received.Add(n)
		_, _ = c.Write(h.Sum(nil))
	})
}

func estFor(hops ...string) string {
	return fmt.Sprintf("est\n%d\n%s\n", len(hops), strings.Join(hops, "\n"))
}

// digestExchange sends payload over a route to a digestResponder, in the way
// of a 2003 initiator (est, wait for ok, forward) or a pipelining one
// (est, forward and payload at once), and checks the digest that comes
// back.
func digestExchange(t *testing.T, first string, list []string, payload []byte, pipelined bool) {
	t.Helper()
	c := dialT(t, first)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	est := []byte(estFor(list...))
	if pipelined {
		msg := append(append(est, "forward\n"...), payload...)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
	} else {
		if _, err := c.Write(est); err != nil {
			t.Fatal(err)
		}
		// Nothing but the ok may come before forward.
		ok := make([]byte, 3)
		if _, err := io.ReadFull(c, ok); err != nil || string(ok) != "ok\n" {
			t.Fatalf("reply %q, %v; want ok", ok, err)
		}
		if _, err := c.Write(append([]byte("forward\n"), payload...)); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(payload)
	if pipelined {
		want := append([]byte("ok\n"), want[:]...)
		if !bytes.Equal(got, want) {
			t.Fatalf("got %x, want ok and the digest %x", got, want)
		}
		return
	}
	if !bytes.Equal(got, want[:]) {
		t.Fatalf("got %x, want the digest %x", got, want)
	}
}

func sha256Sum(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed)})
	_, _ = r.Read(b)
	return b
}

func TestCutThroughRoute(t *testing.T) {
	var received atomic.Int64
	responder := digestResponder(t, &received)
	rec := newRecorder()
	relays := make([]string, 3)
	for i := range relays {
		relays[i] = fixedRelay(t, false, rec, gunshu.Timeouts{})
	}
	list := append(append([]string{}, relays[1:]...), responder)
	for _, size := range []int{0, 1, 1000, gunshu.MaxUnconfirmed, 3 * gunshu.MaxUnconfirmed} {
		for _, pipelined := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d bytes, pipelined %v", size, pipelined), func(t *testing.T) {
				payload := randomBytes(uint64(size), size)
				digestExchange(t, relays[0], list, payload, pipelined)
				// Every relay counts the stream, not the protocol's lines.
				for range relays {
					s := rec.next(t)
					if s.Outcome != gunshu.OutcomeOK || s.Command != gunshu.CmdEst || s.Handshake <= 0 {
						t.Fatalf("relay session %+v, want an ok est", s)
					}
					if s.Bytes.Up != int64(size) || s.Bytes.Down != sha256.Size {
						t.Fatalf("relay counted %+v, want up %d, down %d", s.Bytes, size, sha256.Size)
					}
				}
			})
		}
	}
}

// TestCutThroughMixedRoute runs routes through cut-through relays and
// relays that behave as 2003 ones (WaitForOK), in both orders.
func TestCutThroughMixedRoute(t *testing.T) {
	var received atomic.Int64
	responder := digestResponder(t, &received)
	oldA, oldB := fixedRelay(t, true, nil, gunshu.Timeouts{}), fixedRelay(t, true, nil, gunshu.Timeouts{})
	newA, newB := fixedRelay(t, false, nil, gunshu.Timeouts{}), fixedRelay(t, false, nil, gunshu.Timeouts{})
	payload := randomBytes(7, 2*gunshu.MaxUnconfirmed+123)
	for name, path := range map[string][]string{
		"new old new old": {newA, oldA, newB, oldB},
		"old new old new": {oldA, newA, oldB, newB},
		"old old":         {oldA, oldB},
	} {
		for _, pipelined := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, pipelined %v", name, pipelined), func(t *testing.T) {
				digestExchange(t, path[0], append(append([]string{}, path[1:]...), responder), payload, pipelined)
			})
		}
	}
}

// TestCutThroughNextHopFails: whatever goes wrong before the next hop's
// ok, upstream gets the relay's own fail and the outcome says why.
func TestCutThroughNextHopFails(t *testing.T) {
	const routeTimeout = 300 * time.Millisecond
	rec := newRecorder()
	relay := fixedRelay(t, false, rec, gunshu.Timeouts{Route: routeTimeout})
	for _, c := range []struct {
		name    string
		next    string
		outcome gunshu.Outcome
	}{
		{"answers fail", cannedServer(t, "fail\n", false), gunshu.OutcomeNextHopFailed},
		{"closes", cannedServer(t, "", false), gunshu.OutcomeNextHopFailed},
		{"silent past route_timeout", cannedServer(t, "", true), gunshu.OutcomeTimeout},
		{"not listening", testkit.ClosedAddr(t), gunshu.OutcomeDialFailed},
	} {
		for _, pipelined := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, pipelined %v", c.name, pipelined), func(t *testing.T) {
				conn := dialT(t, relay)
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				msg := estFor(c.next)
				if pipelined {
					msg += "forward\nGET / HTTP/1.0\r\n\r\n"
				}
				start := time.Now()
				if _, err := conn.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(conn)
				if string(got) != "fail\n" {
					t.Fatalf("reply %q, want fail", got)
				}
				s := rec.next(t)
				if s.Outcome != c.outcome || s.Handshake != 0 {
					t.Fatalf("session %+v (%v), want outcome %s", s, s.Err, c.outcome)
				}
				if c.outcome == gunshu.OutcomeTimeout && time.Since(start) < routeTimeout {
					t.Fatalf("fail after %v, before route_timeout %v", time.Since(start), routeTimeout)
				}
			})
		}
	}
}

// TestCutThroughBoundsUnconfirmed: before ok a relay passes at most
// gunshu.MaxUnconfirmed bytes past forward on, then stops reading upstream.
func TestCutThroughBoundsUnconfirmed(t *testing.T) {
	next := testkit.Listen(t)
	defer next.Close()
	relay := fixedRelay(t, false, nil, gunshu.Timeouts{})
	c := dialT(t, relay)
	defer c.Close()
	est := estFor(next.Addr().String())
	go func() {
		_, _ = c.Write(append([]byte(est+"forward\n"), make([]byte, 4*gunshu.MaxUnconfirmed)...))
	}()
	down, err := next.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	want := len("est\n0\nforward\n") + gunshu.MaxUnconfirmed
	got := make([]byte, want+1)
	if _, err := io.ReadFull(down, got[:want]); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, []byte("est\n0\nforward\n")) {
		t.Fatalf("next hop got %q first", got[:20])
	}
	// Nothing more comes before ok; 200 ms is only how long we look.
	_ = down.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := down.Read(got[want:]); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d more bytes before ok (%v)", n, err)
	}
	// After ok the rest flows.
	_ = down.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := down.Write([]byte("ok\n")); err != nil {
		t.Fatal(err)
	}
	if n, err := io.ReadFull(down, make([]byte, 3*gunshu.MaxUnconfirmed)); err != nil {
		t.Fatalf("after ok: %d bytes, %v", n, err)
	}
}

// failingHop is a first hop that reads est, forward and then until it
// holds afterBytes of stream, and then answers fail or hangs up. It
// records how much stream it got.
func failingHop(t testing.TB, afterBytes int, answer string, got *atomic.Int64) string {
	return serveEach(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		line := func() string { l, _ := br.ReadString('\n'); return strings.TrimSuffix(l, "\n") }
		if line() != gunshu.CmdEst {
			return
		}
		n, err := strconv.Atoi(line())
		if err != nil {
			return
		}
		for range n {
			line()
		}
		if line() != gunshu.CmdForward {
			return
		}
		k, _ := io.Copy(io.Discard, io.LimitReader(br, int64(afterBytes)))
		got.Store(k)
		_, _ = io.WriteString(c, answer)
	})
}

// serveEach serves every connection to a fresh loopback listener with
// handle (within 5 s each) until the test ends, and returns the address.
func serveEach(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln := testkit.Listen(t)
	testkit.Serve(t, ln, func(c net.Conn) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		handle(c)
	})
	return ln.Addr().String()
}

// TestEntranceReplaysFailedRoute: a fixed entrance's first route fails
// after the entrance sent it gunshu.MaxUnconfirmed bytes; the entrance replays
// them on a fresh route and the responder gets every byte exactly once.
func TestEntranceReplaysFailedRoute(t *testing.T) {
	for _, answer := range []string{"fail\n", ""} {
		t.Run(fmt.Sprintf("first hop answers %q", answer), func(t *testing.T) {
			var received, failedGot atomic.Int64
			responder := digestResponder(t, &received)
			bad := failingHop(t, gunshu.MaxUnconfirmed, answer, &failedGot)
			good := fixedRelay(t, false, nil, gunshu.Timeouts{})
			// The manager lists the failing hop first, the good relay
			// after the entrance asks again (as it does for attempt 2).
			var lists atomic.Int32
			mgr := listManager(t, func() []string {
				if lists.Add(1) == 1 {
					return []string{bad}
				}
				return []string{good}
			})
			rec := newRecorder()
			entrance := serveEntrance(t, &gunshu.Entrance{
				Dialer:    &gunshu.Dialer{Manager: mgr, Attempts: 2, ListTTL: -1, Guards: nil},
				Responder: responder,
				Observer:  rec,
			})
			payload := randomBytes(3, 3*gunshu.MaxUnconfirmed+17)
			c := dialT(t, entrance)
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			go func() {
				_, _ = c.Write(payload)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			want := sha256.Sum256(payload)
			if !bytes.Equal(got, want[:]) {
				t.Fatalf("digest %x, want %x", got, want)
			}
			if n := failedGot.Load(); n != gunshu.MaxUnconfirmed {
				t.Fatalf("the failed route got %d bytes of stream, want exactly %d", n, gunshu.MaxUnconfirmed)
			}
			if n := received.Load(); n != int64(len(payload)) {
				t.Fatalf("responder received %d bytes, want %d", n, len(payload))
			}
			s := rec.next(t)
			if s.Outcome != gunshu.OutcomeOK || s.Bytes.Up != int64(len(payload)) || s.Bytes.Down != sha256.Size {
				t.Fatalf("entrance session %+v (%v)", s, s.Err)
			}
		})
	}
}

// listManager answers every list request with what list returns.
func listManager(t testing.TB, list func() []string) string {
	return serveEach(t, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 64))
		l := list()
		_, _ = fmt.Fprintf(c, "%d\n%s", len(l), strings.Join(append(l, ""), "\n"))
	})
}
