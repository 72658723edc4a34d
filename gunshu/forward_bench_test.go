package gunshu

import (
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(b *testing.B) (near, far *net.TCPConn) {
	b.Helper()
	ln := listen(b)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	a := <-accepted
	if a == nil {
		b.Fatal("accept failed")
	}
	return a.(*net.TCPConn), c.(*net.TCPConn)
}

// BenchmarkForwardIdle streams through one Forward with the idle timeout
// off and on, side by side: the timeout must cost the splice loop nothing
// measurable (one atomic store per chunk).
func BenchmarkForwardIdle(b *testing.B) {
	for _, bc := range []struct {
		name string
		idle time.Duration
	}{{"off", 0}, {"idle=1m", time.Minute}} {
		b.Run(bc.name, func(b *testing.B) {
			upNear, client := tcpPair(b)
			downNear, sinkConn := tcpPair(b)
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = ForwardIdle(upNear, downNear, nil, nil, bc.idle)
			}()
			received := make(chan int64, 1)
			go func() {
				n, _ := io.Copy(io.Discard, sinkConn)
				received <- n
			}()
			chunk := make([]byte, 256<<10)
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for range b.N {
				if _, err := client.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			_ = client.CloseWrite()
			if n := <-received; n != int64(b.N*len(chunk)) {
				b.Fatalf("sink got %d bytes, want %d", n, b.N*len(chunk))
			}
			b.StopTimer()
			client.Close()
			sinkConn.Close()
			<-done
		})
	}
}
