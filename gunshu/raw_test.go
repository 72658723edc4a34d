package gunshu_test

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// ioWait bounds every read a test makes, so a server that fails to
// answer or to close fails the test instead of hanging it.
const ioWait = 5 * time.Second

// dialRaw opens a plain TCP connection: the tests below speak the wire
// format byte by byte, the way a 2003 peer would.
func dialRaw(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioWait)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func writeRaw(t testing.TB, c net.Conn, s string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(ioWait))
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("writing %.40q: %v", s, err)
	}
}

// readN reads exactly n bytes.
func readN(t testing.TB, c net.Conn, n int) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(ioWait))
	buf := make([]byte, n)
	k, err := io.ReadFull(c, buf)
	if err != nil {
		t.Fatalf("reading %d bytes: got %q, %v", n, buf[:k], err)
	}
	return string(buf)
}

// expectRead reads len(want) bytes and compares.
func expectRead(t testing.TB, c net.Conn, want string) {
	t.Helper()
	if got := readN(t, c, len(want)); got != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// readToEnd reads until the peer closes. A reset counts as a close; a
// timeout fails the test: the peer should have closed.
func readToEnd(t testing.TB, c net.Conn) string {
	t.Helper()
	got, err := readUntilClosed(c, ioWait)
	if err != nil && !isReset(err) {
		t.Fatalf("waiting for close (got %q so far): %v", got, err)
	}
	return got
}

func readUntilClosed(c net.Conn, wait time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		sb.Write(buf[:n])
		if errors.Is(err, io.EOF) {
			return sb.String(), nil
		}
		if err != nil {
			return sb.String(), err
		}
	}
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// exchange sends one request on a fresh connection and returns everything
// the server answered before closing.
func exchange(t testing.TB, addr, request string) string {
	t.Helper()
	c := dialRaw(t, addr)
	writeRaw(t, c, request)
	return readToEnd(t, c)
}

// expectClosed asserts that c ends (EOF or reset) within wait, with no
// more bytes.
func expectClosed(t testing.TB, c net.Conn, wait time.Duration) {
	t.Helper()
	got, err := readUntilClosed(c, wait)
	if err != nil && !isReset(err) {
		t.Fatalf("not closed within %v (read %q): %v", wait, got, err)
	}
	if got != "" {
		t.Fatalf("read %q before close, want nothing", got)
	}
}

// fakeHop is a raw listener playing the next hop (a relay or responder)
// by script, so a test sees exactly what a relay sends down the route.
type fakeHop struct {
	ln   *net.TCPListener
	addr string
}

func newFakeHop(t testing.TB) *fakeHop {
	t.Helper()
	ln := testkit.Listen(t)
	t.Cleanup(func() { ln.Close() })
	return &fakeHop{ln: ln.(*net.TCPListener), addr: ln.Addr().String()}
}

func (h *fakeHop) accept(t testing.TB) *net.TCPConn {
	t.Helper()
	_ = h.ln.SetDeadline(time.Now().Add(ioWait))
	c, err := h.ln.AcceptTCP()
	if err != nil {
		t.Fatalf("fake hop: no connection: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// answerOK plays the route's next hop after the client up sent est: it
// accepts the relay's connection, reads est with the list used up,
// answers ok and waits for ok to reach up. It returns its connection.
func (h *fakeHop) answerOK(t testing.TB, up net.Conn) *net.TCPConn {
	t.Helper()
	down := h.accept(t)
	expectRead(t, down, "est\n0\n")
	writeRaw(t, down, "ok\n")
	expectRead(t, up, "ok\n")
	return down
}

// constSource always yields v. With v = 1<<32, IntN(n) is 0 for every n
// a route can have (TestConstSourcePicks checks this), so a relay given
// it always extends the route to the first entry of its list: tests and
// benchmarks fix a route's exact path this way.
type constSource uint64

func (s constSource) Uint64() uint64 { return uint64(s) }

const (
	pickFirst = constSource(1 << 32)
	pickLast  = constSource(^uint64(0))
)

func TestConstSourcePicks(t *testing.T) {
	for n := 1; n <= 2048; n++ {
		if got := rand.New(pickFirst).IntN(n); got != 0 {
			t.Fatalf("pickFirst: IntN(%d) = %d", n, got)
		}
		if got := rand.New(pickLast).IntN(n); got != n-1 {
			t.Fatalf("pickLast: IntN(%d) = %d", n, got)
		}
	}
}

// serveResponder runs a responder listener whose streams go to handle,
// until the test ends.
func serveResponder(t testing.TB, r *gunshu.Responder, handle func(net.Conn)) (string, *gunshu.Listener) {
	t.Helper()
	ln := testkit.Listen(t)
	rl := r.Listen(ln, 0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := rl.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
	t.Cleanup(func() {
		rl.Close()
		<-done
		rl.Wait()
	})
	return ln.Addr().String(), rl
}
