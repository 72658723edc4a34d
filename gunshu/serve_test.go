package gunshu_test

import (
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"

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
