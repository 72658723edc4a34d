package gunshu_test

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// flakyListener fails its first accepts the way a process at its
// open-file limit sees them, then accepts for real.
type flakyListener struct {
	net.Listener
	failures atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.failures.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestServeSurvivesDescriptorExhaustion: running out of descriptors
// pauses accepting; it does not stop the relay, manager or responder for
// good (found by bench's BenchmarkCapacity: a relay that reached the
// 20,000-descriptor limit refused every connection afterwards).
func TestServeSurvivesDescriptorExhaustion(t *testing.T) {
	flaky := func() *flakyListener {
		l := &flakyListener{Listener: testkit.Listen(t)}
		l.failures.Store(4)
		return l
	}
	t.Run("relay", func(t *testing.T) {
		ln := flaky()
		done := make(chan error, 1)
		go func() { done <- (&gunshu.Relay{}).Serve(ln) }()
		if got := exchange(t, ln.Addr().String(), "test\n"); got != "ok\n" {
			t.Fatalf("got %q", got)
		}
		ln.Close()
		if err := <-done; err != nil {
			t.Fatalf("Serve after Close: %v", err)
		}
	})
	t.Run("manager", func(t *testing.T) {
		ln := flaky()
		done := make(chan error, 1)
		go func() { done <- (&gunshu.Manager{}).Serve(ln) }()
		if got := exchange(t, ln.Addr().String(), "list\n"); got != "0\n" {
			t.Fatalf("got %q", got)
		}
		ln.Close()
		<-done
	})
	t.Run("responder", func(t *testing.T) {
		ln := flaky()
		rl := (&gunshu.Responder{}).Listen(ln, 0)
		defer func() { rl.Close(); rl.Wait() }()
		if got := exchange(t, ln.Addr().String(), "test\n"); got != "ok\n" {
			t.Fatalf("got %q", got)
		}
	})
}

// TestKeepAcceptingHooks: a pause calls Paused once with its first error
// and Resumed once, at the next connection; Close ends a pause at once,
// and Resumed says so.
func TestKeepAcceptingHooks(t *testing.T) {
	inner := &flakyListener{Listener: testkit.Listen(t)}
	inner.failures.Store(3)
	paused := make(chan error, 10)
	resumed := make(chan time.Duration, 10)
	closedDuringPause := make(chan bool, 10)
	ln := gunshu.KeepAccepting(inner, gunshu.AcceptHooks{
		Paused: func(err error) { paused <- err },
		Resumed: func(d time.Duration, closed bool) {
			resumed <- d
			closedDuringPause <- closed
		},
	})
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := <-paused; !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("Paused got %v, want EMFILE", err)
	}
	if sc := <-accepted; sc == nil {
		t.Fatal("no connection accepted after the pause")
	} else {
		sc.Close()
	}
	// 3 failures wait 5+10+20 ms.
	if d := <-resumed; d < 30*time.Millisecond || <-closedDuringPause {
		t.Fatalf("Resumed after %v, want at least the 35ms the pause waited, by a connection", d)
	}
	if len(paused) != 0 || len(resumed) != 0 {
		t.Fatalf("hooks called more than once: %d paused, %d resumed", len(paused), len(resumed))
	}

	// A pause that Close interrupts: every Accept fails until then.
	inner.failures.Store(1 << 30)
	done := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		done <- err
	}()
	<-paused
	ln.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close during a pause: %v, want net.ErrClosed", err)
	}
	<-resumed
	if !<-closedDuringPause {
		t.Fatal("the pause Close ended was reported as a connection accepted")
	}
}

// TestKeepAcceptingResumesWithoutClient: a pause ends once Accept works
// again, waiting for a client, not only when the next client comes (a
// manager whose descriptors came back showed paused for as long as nobody
// asked for a list).
func TestKeepAcceptingResumesWithoutClient(t *testing.T) {
	inner := &flakyListener{Listener: testkit.Listen(t)}
	inner.failures.Store(3)
	paused := make(chan error, 10)
	resumed := make(chan time.Duration, 10)
	ln := gunshu.KeepAccepting(inner, gunshu.AcceptHooks{
		Paused:  func(err error) { paused <- err },
		Resumed: func(d time.Duration, closed bool) { resumed <- d },
	})
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	if err := <-paused; !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("Paused got %v, want EMFILE", err)
	}
	select {
	case d := <-resumed:
		// 3 failures wait 5+10+20 ms; the pause ends when the Accept
		// that then blocks began.
		if d < 30*time.Millisecond || d > 5*time.Second {
			t.Fatalf("Resumed after %v, want the 35ms the pause waited", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pause did not end while Accept waited for a client")
	}
	select {
	case c := <-accepted:
		t.Fatalf("Accept returned %v with no client", c)
	default:
	}

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if sc := <-accepted; sc == nil {
		t.Fatal("no connection accepted after the pause")
	} else {
		sc.Close()
	}
	ln.Close()
	if len(paused) != 0 || len(resumed) != 0 {
		t.Fatalf("hooks called again: %d paused, %d resumed", len(paused), len(resumed))
	}
}
