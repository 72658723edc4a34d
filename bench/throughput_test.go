package bench

import (
	"encoding/binary"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// chainKinds are the chains every benchmark compares, built fresh for
// each sub-benchmark so none inherits another's state.
var chainKinds = []struct {
	name  string
	build func(n *network) chain
}{
	{"direct", directChain},
	{"gunshu1", func(n *network) chain { return gunshuChain(n, 1) }},
	{"gunshu3", func(n *network) chain { return gunshuChain(n, 3) }},
	{"gunshu5", func(n *network) chain { return gunshuChain(n, 5) }},
	{"splice1", func(n *network) chain { return minimalChain(n, "splice", 1, spliceCopy) }},
	{"splice3", func(n *network) chain { return minimalChain(n, "splice", 3, spliceCopy) }},
	{"splice5", func(n *network) chain { return minimalChain(n, "splice", 5, spliceCopy) }},
	{"copy1", func(n *network) chain { return minimalChain(n, "copy", 1, bufferCopy) }},
	{"copy3", func(n *network) chain { return minimalChain(n, "copy", 3, bufferCopy) }},
	{"copy5", func(n *network) chain { return minimalChain(n, "copy", 5, bufferCopy) }},
}

// cpuTime is the process's user plus system time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkThroughput moves b.N MiB through each chain in one direction
// on one connection: up is client → server, down is server → client.
// Besides MB/s it reports the process's CPU seconds per GiB moved; run.sh
// subtracts the direct connection's and divides by the hops to get the
// relays' CPU per GiB per hop.
func BenchmarkThroughput(b *testing.B) {
	for _, dir := range []string{"up", "down"} {
		for _, kind := range chainKinds {
			b.Run(dir+"/"+kind.name, func(b *testing.B) {
				n := &network{tb: b}
				defer n.stop()
				c := kind.build(n)
				b.SetBytes(chunkSize)
				var move func(b *testing.B, c chain)
				if dir == "up" {
					move = upload
				} else {
					move = download
				}
				move(b, c)
			})
		}
	}
}

func upload(b *testing.B, c chain) {
	conn, err := c.dial([]byte{opUpload})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Minute))
	b.ResetTimer()
	cpu := cpuTime()
	for range b.N {
		if _, err := conn.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	var got uint64
	if err := binary.Read(conn, binary.BigEndian, &got); err != nil {
		b.Fatal(err)
	}
	cpu = cpuTime() - cpu
	b.StopTimer()
	if want := uint64(b.N) * chunkSize; got != want {
		b.Fatalf("server got %d bytes, want %d", got, want)
	}
	reportCPU(b, cpu)
}

func download(b *testing.B, c chain) {
	req := make([]byte, 9)
	req[0] = opDownload
	want := uint64(b.N) * chunkSize
	binary.BigEndian.PutUint64(req[1:], want)
	conn, err := c.dial(req)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Minute))
	buf := make([]byte, chunkSize)
	b.ResetTimer()
	cpu := cpuTime()
	var got uint64
	for {
		k, err := conn.Read(buf)
		got += uint64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	cpu = cpuTime() - cpu
	b.StopTimer()
	if got != want {
		b.Fatalf("client got %d bytes, want %d", got, want)
	}
	reportCPU(b, cpu)
}

func reportCPU(b *testing.B, cpu time.Duration) {
	gib := float64(b.N) * chunkSize / (1 << 30)
	b.ReportMetric(cpu.Seconds()/gib, "cpu-s/GiB")
}

// setupKinds are the chains BenchmarkSetup compares: the direct
// connection and the 0-hop Gunshu route (est straight to the responder)
// are the baselines from which run.sh derives the cost per hop.
var setupKinds = []struct {
	name  string
	build func(n *network) chain
}{
	{"direct", directChain},
	{"splice1", func(n *network) chain { return minimalChain(n, "splice", 1, spliceCopy) }},
	{"splice3", func(n *network) chain { return minimalChain(n, "splice", 3, spliceCopy) }},
	{"splice5", func(n *network) chain { return minimalChain(n, "splice", 5, spliceCopy) }},
	{"gunshu0", func(n *network) chain { return gunshuChain(n, 0) }},
	{"gunshu1", func(n *network) chain { return gunshuChain(n, 1) }},
	{"gunshu3", func(n *network) chain { return gunshuChain(n, 3) }},
	{"gunshu5", func(n *network) chain { return gunshuChain(n, 5) }},
	{"gunshu0p", func(n *network) chain { return gunshuPipelinedChain(n, 0) }},
	{"gunshu1p", func(n *network) chain { return gunshuPipelinedChain(n, 1) }},
	{"gunshu3p", func(n *network) chain { return gunshuPipelinedChain(n, 3) }},
	{"gunshu5p", func(n *network) chain { return gunshuPipelinedChain(n, 5) }},
	{"gunshu1w", func(n *network) chain { return gunshu2003Chain(n, 1) }},
	{"gunshu3w", func(n *network) chain { return gunshu2003Chain(n, 3) }},
	{"gunshu5w", func(n *network) chain { return gunshu2003Chain(n, 5) }},
}

// BenchmarkSetup opens one connection per op through each chain and
// waits for the server's first byte (a server that speaks first, like
// SMTP or SSH): for Gunshu that is est, ok and forward through every
// relay; for the minimal relays the accept and dial of every hop. The
// "p" variants pipeline forward behind est. The client ends each
// connection with a reset and the server closes first, so no client port
// lingers in TIME_WAIT to slow later dials down. Besides the wall time
// it reports the process CPU time per op, which a busy machine disturbs
// less.
func BenchmarkSetup(b *testing.B) {
	for _, kind := range setupKinds {
		b.Run(kind.name, func(b *testing.B) {
			n := &network{tb: b}
			defer n.stop()
			c := kind.build(n)
			var pong [1]byte
			b.ResetTimer()
			cpu := cpuTime()
			defer func() {
				b.ReportMetric(float64((cpuTime()-cpu).Microseconds())/float64(b.N), "cpu-us/op")
			}()
			for range b.N {
				conn, err := c.dial([]byte{opPing})
				if err != nil {
					b.Fatal(err)
				}
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(conn, pong[:]); err != nil {
					b.Fatal(err)
				}
				_ = conn.(*net.TCPConn).SetLinger(0)
				conn.Close()
			}
		})
	}
}
