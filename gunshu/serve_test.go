package gunshu

import (
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
)

// exhaustedListener fails its first Accepts as a process out of file
// descriptors does.
type exhaustedListener struct {
	net.Listener
	failures atomic.Int32
}

func (l *exhaustedListener) Accept() (net.Conn, error) {
	if l.failures.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

func TestServersSurviveFDExhaustion(t *testing.T) {
	relayLn := &exhaustedListener{Listener: listen(t)}
	relayLn.failures.Store(5)
	relay := serveRelayOn(t, &Relay{}, relayLn)
	if got := exchange(t, relay, "test\n"); got != "ok\n" {
		t.Fatalf("relay after EMFILE: %q", got)
	}

	respLn := &exhaustedListener{Listener: listen(t)}
	respLn.failures.Store(5)
	rl := (&Responder{}).Listen(respLn, 0)
	t.Cleanup(func() { rl.Close(); rl.Wait() })
	if got := exchange(t, respLn.Addr().String(), "test\n"); got != "ok\n" {
		t.Fatalf("responder after EMFILE: %q", got)
	}
}
