package gunshu

import (
	"github.com/gunshu/caddy-gunshu/gunshu/forward"

	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// recorder is an Observer that keeps the finished sessions.
type recorder struct{ ended chan Session }

func newRecorder() *recorder { return &recorder{ended: make(chan Session, 1024)} }

func (r *recorder) SessionStarted(Role) {}
func (r *recorder) SessionEnded(s Session) {
	select {
	case r.ended <- s:
	default:
	}
}

func (r *recorder) next(t testing.TB) Session {
	t.Helper()
	select {
	case s := <-r.ended:
		return s
	case <-time.After(3 * time.Second):
		t.Fatal("no session ended")
	}
	return Session{}
}

// echoServer is a responder that echoes every stream; it returns its
// address.
func echoServer(t testing.TB) string {
	t.Helper()
	ln := listen(t)
	rl := (&Responder{}).Listen(ln, 0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := rl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { rl.Close(); rl.Wait(); <-done })
	return ln.Addr().String()
}

// routeTo opens a one-relay route to responder through relay and returns
// the stream.
func routeTo(t testing.TB, relay, responder string) net.Conn {
	t.Helper()
	c := dialT(t, relay)
	if _, err := c.Write([]byte("est\n1\n" + responder + "\n")); err != nil {
		t.Fatal(err)
	}
	if got := readReply(t, c); got != "ok\n" {
		t.Fatalf("est = %q", got)
	}
	if _, err := c.Write(forwardLine); err != nil {
		t.Fatal(err)
	}
	return c
}

func echoByte(c net.Conn, b byte) error {
	if _, err := c.Write([]byte{b}); err != nil {
		return err
	}
	got := make([]byte, 1)
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if got[0] != b {
		return errors.New("echo mismatch")
	}
	return nil
}

func TestRelayIdleTimeout(t *testing.T) {
	const idle = 1500 * time.Millisecond
	rec := newRecorder()
	relay := serveRelay(t, &Relay{Policy: loopbackPolicy(), IdleTimeout: idle, Observer: rec})
	c := routeTo(t, relay, echoServer(t))
	// Traffic more often than idle keeps the session for several idle
	// periods.
	for i := range 10 {
		time.Sleep(idle / 6)
		if err := echoByte(c, byte('a'+i)); err != nil {
			t.Fatalf("echo %d while active: %v", i, err)
		}
	}
	quiet := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read data on an idle session")
	}
	if d := time.Since(quiet); d < idle*8/10 || d > idle+time.Second {
		t.Fatalf("idle session ended after %v, idle timeout %v", d, idle)
	}
	// The route was established, so the outcome is ok; the error says why
	// the stream ended.
	if s := rec.next(t); s.Outcome != OutcomeOK || !errors.Is(s.Err, forward.ErrIdleTimeout) {
		t.Fatalf("session outcome %s, error %v", s.Outcome, s.Err)
	}
}

func TestRelayWithoutIdleTimeoutKeepsQuietSessions(t *testing.T) {
	relay := serveRelay(t, &Relay{Policy: loopbackPolicy()})
	c := routeTo(t, relay, echoServer(t))
	time.Sleep(700 * time.Millisecond)
	if err := echoByte(c, 'x'); err != nil {
		t.Fatalf("quiet session without idle timeout: %v", err)
	}
}
