package gunshu

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// scriptConn is a connection whose peer sent script and half-closed: Read
// yields script then EOF, Write collects the replies. It lets the fuzzers
// drive a whole role without sockets.
type scriptConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func newScriptConn(script []byte) *scriptConn { return &scriptConn{in: bytes.NewReader(script)} }

func (c *scriptConn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 7001}
}
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 50123}
}
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// closedWorld is a policy under which nothing can be reached and no name
// resolves, so fuzzed lists never leave the process.
func closedWorld() Policy {
	return Policy{
		Deny: []string{"0.0.0.0/0", "::/0"},
		Resolver: &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("no network in the fuzzer")
		}},
	}
}

var roleSeeds = []string{
	"test\n",
	"est\n1\n192.0.2.1:80\n",
	"est\n2\n192.0.2.1:80\nexample.com:443\nforward\nGET / HTTP/1.0\r\n\r\n",
	"est\n1\n[2001:db8::1]:443\r\nforward\r\npayload",
	"est\n0\n",
	"est\n-1\n",
	"est\n99999999999\n",
	"est\n3\na:1\na:1\nb:2\n",
	"reg\n192.0.2.1:7001\n",
	"reg\n0x7f000001:80\n",
	"list\n",
	"  est \t\n 1 \n 192.0.2.1:80 \n",
	"hello\n",
	"\n\n\n",
	strings.Repeat("a", 1100) + "\n",
}

// FuzzRelayHandshake feeds any bytes to a relay as a predecessor's: the
// relay answers nothing, fail, or ok (to test only), and never panics or
// hangs.
func FuzzRelayHandshake(f *testing.F) {
	for _, s := range roleSeeds {
		f.Add([]byte(s))
	}
	r := &Relay{Policy: closedWorld(), Self: []string{"192.0.2.1:7001"}, Timeouts: Timeouts{Route: time.Second}}
	f.Fuzz(func(t *testing.T, script []byte) {
		c := newScriptConn(script)
		err := r.ServeConn(c)
		switch out := c.out.String(); out {
		case "", "fail\n":
		case "ok\n":
			if err != nil {
				t.Fatalf("ok with error %v", err)
			}
		default:
			t.Fatalf("relay wrote %q", out)
		}
	})
}

// FuzzManagerExchange: a manager answers any bytes with nothing, fail,
// ok or a well-formed list, and registers nothing it cannot reach.
func FuzzManagerExchange(f *testing.F) {
	for _, s := range roleSeeds {
		f.Add([]byte(s))
	}
	m := &Manager{Policy: closedWorld(), Registry: &MemoryRegistry{}, TestTimeout: time.Second}
	f.Fuzz(func(t *testing.T, script []byte) {
		c := newScriptConn(script)
		_ = m.ServeConn(c)
		out := c.out.String()
		switch out {
		case "", "fail\n", "0\n":
		default:
			t.Fatalf("manager wrote %q", out)
		}
		if addrs, _ := m.Registry.Addrs(context.Background()); len(addrs) != 0 {
			t.Fatalf("registered %v in a closed world", addrs)
		}
	})
}

// FuzzResponderHandshake: a responder answers nothing, fail or ok, and
// when it hands over a stream, the stream is exactly what followed the
// handshake.
func FuzzResponderHandshake(f *testing.F) {
	for _, s := range roleSeeds {
		f.Add([]byte(s))
	}
	r := &Responder{}
	f.Fuzz(func(t *testing.T, script []byte) {
		c := newScriptConn(script)
		st, err := r.Handshake(c, nil)
		out := c.out.String()
		if err != nil {
			// ok answers test, or an est whose forward never came.
			if out != "" && out != "fail\n" && out != "ok\n" {
				t.Fatalf("responder wrote %q with error %v", out, err)
			}
			return
		}
		if out != "ok\n" {
			t.Fatalf("stream after reply %q", out)
		}
		rest, rerr := io.ReadAll(st)
		st.Close()
		if rerr != nil {
			t.Fatal(rerr)
		}
		if !bytes.HasSuffix(script, rest) {
			t.Fatalf("stream %q is not the end of the input", rest)
		}
		if i := bytes.Index(script, []byte("forward")); i < 0 || len(rest) > len(script)-i-len("forward") {
			t.Fatalf("stream %q began before forward", rest)
		}
	})
}
