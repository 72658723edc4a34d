package gunshu

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
)

// BenchmarkEntranceSession measures one client session through an
// entrance — connect, open the route, echo one line, close — for the
// fixed-target entrance (the baseline) and for each proxy protocol.
func BenchmarkEntranceSession(b *testing.B) {
	n := newTestNet(b, 3)
	echo := n.echoResponder(b)
	fixed := n.entrance(b, &Entrance{Responder: echo})
	proxy := n.entrance(b, &Entrance{})
	host, port, _ := net.SplitHostPort(echo)
	ip := net.ParseIP(host).To4()
	var p int
	for _, c := range port {
		p = p*10 + int(c-'0')
	}
	socksRequest := cat(socksHelloNoAuth, []byte{5, 1, 0, 1}, ip, []byte{byte(p >> 8), byte(p)})
	connectRequest := "CONNECT " + echo + " HTTP/1.1\r\n\r\n"
	line := []byte("ping\n")

	session := func(b *testing.B, addr string, open func(net.Conn, *bufio.Reader) error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if err := open(c, br); err != nil {
			b.Fatal(err)
		}
		c.Write(line)
		if got, err := br.ReadString('\n'); err != nil || got != string(line) {
			b.Fatalf("echo %q %v", got, err)
		}
	}
	b.Run("fixed", func(b *testing.B) {
		for b.Loop() {
			session(b, fixed, func(net.Conn, *bufio.Reader) error { return nil })
		}
	})
	b.Run("socks5", func(b *testing.B) {
		for b.Loop() {
			session(b, proxy, func(c net.Conn, br *bufio.Reader) error {
				c.Write(socksRequest)
				_, err := io.ReadFull(br, make([]byte, 12))
				return err
			})
		}
	})
	b.Run("http-connect", func(b *testing.B) {
		for b.Loop() {
			session(b, proxy, func(c net.Conn, br *bufio.Reader) error {
				io.WriteString(c, connectRequest)
				resp, err := http.ReadResponse(br, nil)
				if err == nil && resp.StatusCode != 200 {
					b.Fatalf("CONNECT: %s", resp.Status)
				}
				return err
			})
		}
	})
}
