package gunshu_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/gunshu/forward"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// recorder is an Observer that keeps the finished sessions.
type recorder struct{ ended chan gunshu.Session }

func newRecorder() *recorder { return &recorder{ended: make(chan gunshu.Session, 1024)} }

func (r *recorder) SessionStarted(gunshu.Role) {}
func (r *recorder) SessionEnded(s gunshu.Session) {
	select {
	case r.ended <- s:
	default:
	}
}

func (r *recorder) next(t testing.TB) gunshu.Session {
	t.Helper()
	select {
	case s := <-r.ended:
		return s
	case <-time.After(3 * time.Second):
		t.Fatal("no session ended")
	}
	return gunshu.Session{}
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
	if _, err := c.Write([]byte("forward\n")); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRelayIdleTimeout(t *testing.T) {
	const idle = 1500 * time.Millisecond
	rec := newRecorder()
	relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy(), IdleTimeout: idle, Observer: rec})
	c := routeTo(t, relay, testnet.EchoResponder(t))
	// Traffic more often than idle keeps the session for several idle
	// periods.
	for i := range 10 {
		time.Sleep(idle / 6)
		if err := testkit.EchoByte(c, byte('a'+i)); err != nil {
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
	if s := rec.next(t); s.Outcome != gunshu.OutcomeOK || !errors.Is(s.Err, forward.ErrIdleTimeout) {
		t.Fatalf("session outcome %s, error %v", s.Outcome, s.Err)
	}
}

func TestRelayWithoutIdleTimeoutKeepsQuietSessions(t *testing.T) {
	relay := testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy()})
	c := routeTo(t, relay, testnet.EchoResponder(t))
	time.Sleep(700 * time.Millisecond)
	if err := testkit.EchoByte(c, 'x'); err != nil {
		t.Fatalf("quiet session without idle timeout: %v", err)
	}
}
