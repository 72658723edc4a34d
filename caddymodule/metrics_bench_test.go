package caddymodule

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/gunshu/forward"
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
			responder := startEchoResponder(b, c.observer)
			relay := startBenchRelay(b, c.observer)
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

func startBenchRelay(b *testing.B, obs gunshu.Observer) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	relay := &gunshu.Relay{Policy: gunshu.Policy{Allow: []string{"127.0.0.0/8"}}, Observer: obs}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = relay.Serve(ln)
	}()
	b.Cleanup(func() {
		ln.Close()
		relay.Close()
		<-done
	})
	return ln.Addr().String()
}

// startEchoResponder ends routes and echoes their stream.
func startEchoResponder(b *testing.B, obs gunshu.Observer) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	responder := &gunshu.Responder{Observer: obs}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				stream, err := responder.Handshake(conn, nil)
				if err != nil {
					return
				}
				defer stream.Close()
				_, _ = io.Copy(stream, stream)
				_ = stream.(interface{ CloseWrite() error }).CloseWrite()
			}()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}
