package forward

import (
	"io"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// BenchmarkCopyIdle streams through one Copy with the idle timeout
// off and on, side by side: the timeout must cost the splice loop nothing
// measurable (one atomic store per chunk).
func BenchmarkCopyIdle(b *testing.B) {
	for _, bc := range []struct {
		name string
		idle time.Duration
	}{{"off", 0}, {"idle=1m", time.Minute}} {
		b.Run(bc.name, func(b *testing.B) {
			upNear, client := testkit.TCPPair(b)
			downNear, sinkConn := testkit.TCPPair(b)
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = Copy(upNear, downNear, nil, nil, bc.idle)
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
