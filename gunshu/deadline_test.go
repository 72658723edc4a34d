package gunshu_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// TestSlowlorisCutAtCommandDeadline trickles a valid request one byte at
// a time, slower than the handshake deadline allows: every role ends the
// connection at the deadline, without ok, and serves the next client.
func TestSlowlorisCutAtCommandDeadline(t *testing.T) {
	const deadline = 400 * time.Millisecond
	tm := gunshu.Timeouts{Command: deadline}
	responder := func() string {
		ln := testkit.Listen(t)
		rl := (&gunshu.Responder{Timeouts: tm}).Listen(ln, 0)
		t.Cleanup(func() { rl.Close(); rl.Wait() })
		return ln.Addr().String()
	}
	target := testnet.EchoResponder(t)
	roles := []struct {
		name, addr, request string
	}{
		{"relay", testnet.ServeRelay(t, &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Timeouts: tm}), "est\n1\n" + target + "\n"},
		{"manager", testnet.ServeManager(t, &gunshu.Manager{Policy: testnet.LoopbackPolicy(), Timeouts: tm}), "reg\n" + target + "\n"},
		{"responder", responder(), "est\n1\n" + target + "\n"},
	}
	for _, role := range roles {
		t.Run(role.name, func(t *testing.T) {
			c := dialT(t, role.addr)
			start := time.Now()
			cut := make(chan time.Duration, 1)
			go func() {
				// fail is a fair answer to a request that timed out;
				// ok never is.
				got, _ := io.ReadAll(c)
				if len(got) > 0 && string(got) != "fail\n" {
					t.Errorf("reply %q to a request cut short", got)
				}
				cut <- time.Since(start)
			}()
			// One byte per 100 ms: the request would take several
			// deadlines to arrive.
			for i := 0; i < len(role.request); i++ {
				if _, err := c.Write([]byte{role.request[i]}); err != nil {
					break
				}
				select {
				case <-time.After(100 * time.Millisecond):
					continue
				case d := <-cut:
					cut <- d
				}
				break
			}
			d := <-cut
			if d < deadline*8/10 || d > deadline+time.Second {
				t.Fatalf("cut after %v, deadline %v", d, deadline)
			}
			// The server still answers a prompt client.
			if got := exchange(t, role.addr, "test\n"); role.name != "manager" && got != "ok\n" {
				t.Fatalf("test afterwards = %q", got)
			}
			if got := exchange(t, role.addr, "list\n"); role.name == "manager" && got == "" {
				t.Fatal("list afterwards: no answer")
			}
		})
	}
}

// TestSilentPeerCutAtCommandDeadline connects and sends nothing.
func TestSilentPeerCutAtCommandDeadline(t *testing.T) {
	const deadline = 300 * time.Millisecond
	addr := testnet.ServeRelay(t, &gunshu.Relay{Timeouts: gunshu.Timeouts{Command: deadline}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(5 * time.Second))
	if n, _ := c.Read(make([]byte, 8)); n != 0 {
		t.Fatal("a reply to nothing")
	}
	if d := time.Since(start); d < deadline*8/10 || d > deadline+time.Second {
		t.Fatalf("cut after %v, deadline %v", d, deadline)
	}
}
