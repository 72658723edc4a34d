package caddymodule

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/gunshu/forward"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// BenchmarkObserverOverhead measures what metrics add to a route: one
// short session through a relay to an echoing responder, on loopback,
// without an observer (the baseline) and with the metrics observer.
// Compare the two ns/op of one run.
func BenchmarkObserverOverhead(b *testing.B) {
	for _, c := range []struct {
		name     string
		observer gunshu.Observer
	}{{"baseline", nil}, {"metrics", metricsObserver{}}} {
		b.Run(c.name, func(b *testing.B) {
			responder := testnet.ServeResponder(b, &gunshu.Responder{Observer: c.observer}, testkit.Echo)
			relay := testnet.ServeRelay(b, &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Observer: c.observer})
			est := []byte("est\n1\n" + responder + "\n")
			payload := []byte("forward\nping\n")
			b.ResetTimer()
			for range b.N {
				if err := benchSession(relay, est, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMetricsObserver is the observer alone: one session's start and
// end.
func BenchmarkMetricsObserver(b *testing.B) {
	var obs metricsObserver
	s := gunshu.Session{Role: gunshu.RoleRelay, Command: gunshu.CmdEst, Outcome: gunshu.OutcomeOK,
		Handshake: time.Millisecond, Bytes: forward.Counts{Up: 100, Down: 1000}}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			obs.SessionStarted(gunshu.RoleRelay)
			obs.SessionEnded(s)
		}
	})
}

func benchSession(relay string, est, payload []byte) error {
	conn, err := net.DialTimeout("tcp", relay, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(est); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	if line, err := r.ReadString('\n'); err != nil || line != "ok\n" {
		return io.ErrUnexpectedEOF
	}
	if _, err := conn.Write(payload); err != nil {
		return err
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	_, err = io.Copy(io.Discard, r)
	return err
}
