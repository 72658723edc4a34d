package gunshu_test

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// fakeDNS is a tiny DNS server on loopback UDP: answer decides the
// addresses for each query (the name without its final dot, and the
// number of earlier queries of that name and type). It lets tests make a
// name resolve to loopback, or to one address and then another.
type fakeDNS struct {
	conn    net.PacketConn
	answer  func(name string, ipv6 bool, seen int) []netip.Addr
	mu      sync.Mutex
	queries map[string]int
}

func newFakeDNS(t testing.TB, answer func(name string, ipv6 bool, seen int) []netip.Addr) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDNS{conn: pc, answer: answer, queries: make(map[string]int)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if reply := f.reply(buf[:n]); reply != nil {
				_, _ = pc.WriteTo(reply, from)
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return f
}

// resolver returns a pure-Go resolver that asks only this server.
func (f *fakeDNS) resolver() *net.Resolver {
	addr := f.conn.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

// count is how many queries (A and AAAA together) name received.
func (f *fakeDNS) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries[name+"/A"] + f.queries[name+"/AAAA"]
}

const (
	dnsTypeA    = 1
	dnsTypeAAAA = 28
)

// reply answers a query with the question copied and one record per
// address of the asked family.
func (f *fakeDNS) reply(q []byte) []byte {
	if len(q) < 12 {
		return nil
	}
	var labels []string
	i := 12
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if l > 63 || i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	if i+5 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i+1:])
	question := q[12 : i+5]
	name := strings.ToLower(strings.Join(labels, "."))
	key := name + "/A"
	if qtype == dnsTypeAAAA {
		key = name + "/AAAA"
	}
	f.mu.Lock()
	seen := f.queries[key]
	f.queries[key]++
	f.mu.Unlock()
	var addrs []netip.Addr
	if qtype == dnsTypeA || qtype == dnsTypeAAAA {
		for _, a := range f.answer(name, qtype == dnsTypeAAAA, seen) {
			if a.Is4() == (qtype == dnsTypeA) {
				addrs = append(addrs, a)
			}
		}
	}
	out := make([]byte, 12, 512)
	copy(out, q[:2])                            // ID
	binary.BigEndian.PutUint16(out[2:], 0x8180) // response, recursion desired and available
	binary.BigEndian.PutUint16(out[4:], 1)      // one question
	binary.BigEndian.PutUint16(out[6:], uint16(len(addrs)))
	out = append(out, question...)
	for _, a := range addrs {
		out = append(out, 0xc0, 12) // the name: a pointer to the question's
		out = binary.BigEndian.AppendUint16(out, qtype)
		out = binary.BigEndian.AppendUint16(out, 1) // class IN
		out = binary.BigEndian.AppendUint32(out, 0) // TTL: never cache
		raw := a.AsSlice()
		out = binary.BigEndian.AppendUint16(out, uint16(len(raw)))
		out = append(out, raw...)
	}
	return out
}
