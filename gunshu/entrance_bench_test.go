package gunshu_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// BenchmarkEntranceSession measures one client session through an
// entrance — connect, open the route, echo one line, close — for the
// fixed-target entrance (the baseline) and for each proxy protocol.
func BenchmarkEntranceSession(b *testing.B) {
	n := testnet.New(b, 3)
	echo := testnet.EchoResponder(b)
	fixed := n.ServeEntrance(b, &gunshu.Entrance{Responder: echo})
	proxy := n.ServeEntrance(b, &gunshu.Entrance{})
	socksRequest := socksConnect(echo)
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
