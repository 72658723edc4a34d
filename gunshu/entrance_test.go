package gunshu_test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

func proxyClient(proxy string) *http.Client {
	u, _ := url.Parse(proxy)
	return &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{Proxy: http.ProxyURL(u), DisableKeepAlives: true},
	}
}

// socksConnect is what a SOCKS5 client without authentication sends to
// reach the IPv4 host:port addr: its greeting and its CONNECT request.
func socksConnect(addr string) []byte {
	ap := netip.MustParseAddrPort(addr)
	ip, port := ap.Addr().As4(), ap.Port()
	return append([]byte{5, 1, 0, 5, 1, 0, 1, ip[0], ip[1], ip[2], ip[3]}, byte(port>>8), byte(port))
}

func getBody(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestEntranceProxiesWithGoClients(t *testing.T) {
	n := testnet.New(t, 4)
	responder := testnet.PageResponder(t)
	entrance := n.ServeEntrance(t, &gunshu.Entrance{Username: "alice", Password: "s3cret"})
	for _, scheme := range []string{"socks5", "http"} {
		t.Run(scheme, func(t *testing.T) {
			c := proxyClient(scheme + "://alice:s3cret@" + entrance)
			var wg sync.WaitGroup
			errs := make(chan error, 20)
			for i := range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, body, err := getBody(c, fmt.Sprintf("http://%s/p%d", responder, i))
					if want := fmt.Sprintf("path /p%d host %s body ", i, responder); err == nil && body != want {
						err = fmt.Errorf("got %q, want %q", body, want)
					}
					if err != nil {
						errs <- err
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			bad := proxyClient(scheme + "://alice:wrong@" + entrance)
			status, _, err := getBody(bad, "http://"+responder+"/")
			if scheme == "http" && status != http.StatusProxyAuthRequired {
				t.Errorf("wrong password: status %d, err %v; want 407", status, err)
			}
			if scheme == "socks5" && (err == nil || !strings.Contains(err.Error(), "authentication failed")) {
				t.Errorf("wrong password: err %v, want a SOCKS authentication failure", err)
			}
		})
	}
}

func TestEntranceHTTPForwardsBody(t *testing.T) {
	n := testnet.New(t, 3)
	responder := testnet.PageResponder(t)
	entrance := n.ServeEntrance(t, &gunshu.Entrance{})
	c := proxyClient("http://" + entrance)
	body := strings.Repeat("upload ", 50000)
	resp, err := c.Post("http://"+responder+"/up", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if want := "path /up host " + responder + " body " + body; string(got) != want {
		t.Fatalf("got %d bytes, want %d", len(got), len(want))
	}
}

// recordingObserver keeps ended sessions.
type recordingObserver struct {
	mu       sync.Mutex
	sessions []gunshu.Session
}

func (o *recordingObserver) SessionStarted(gunshu.Role) {}
func (o *recordingObserver) SessionEnded(s gunshu.Session) {
	o.mu.Lock()
	o.sessions = append(o.sessions, s)
	o.mu.Unlock()
}

func (o *recordingObserver) wait(t *testing.T, count int) []gunshu.Session {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		o.mu.Lock()
		s := append([]gunshu.Session(nil), o.sessions...)
		o.mu.Unlock()
		if len(s) >= count {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("fewer than %d sessions ended", count)
	return nil
}

func TestEntranceHandshakeTimeout(t *testing.T) {
	n := testnet.New(t, 2)
	obs := &recordingObserver{}
	entrance := n.ServeEntrance(t, &gunshu.Entrance{HandshakeTimeout: 200 * time.Millisecond, Observer: obs})
	for _, partial := range []string{"", "\x05\x01", "CONNECT a.example:443 HTTP/1.1\r\n"} {
		conn, err := net.Dial("tcp", entrance)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, partial)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		rest, err := io.ReadAll(conn)
		conn.Close()
		if err != nil || len(rest) != 0 {
			t.Errorf("stalled client %q: read %q, %v; want a quiet close", partial, rest, err)
		}
	}
	for _, s := range obs.wait(t, 3) {
		if s.Outcome != gunshu.OutcomeTimeout {
			t.Errorf("stalled client ended %s (%v), want timeout", s.Outcome, s.Err)
		}
	}
}

func TestEntranceAnswersRouteFailure(t *testing.T) {
	n := testnet.New(t, 2)
	dead := testkit.ClosedAddr(t) // nothing listens here: the last relay cannot connect
	entrance := n.ServeEntrance(t, &gunshu.Entrance{Dialer: &gunshu.Dialer{Manager: n.ManagerAddr, Attempts: 1}})
	// (curl's CONNECT to it gets 502: e2e's TestEntranceAnswersRouteFailureToCurl.)
	conn, err := net.Dial("tcp", entrance)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	conn.Write(socksConnect(dead))
	reply := make([]byte, 12)
	if _, err := io.ReadFull(conn, reply); err != nil {
		t.Fatal(err)
	}
	if reply[3] != 4 { // host unreachable
		t.Fatalf("SOCKS5 reply %v, want host unreachable", reply)
	}
}

func TestEntranceLogsNoClientAddress(t *testing.T) {
	n := testnet.New(t, 2)
	responder := testnet.PageResponder(t)
	core, logs := observer.New(zap.DebugLevel)
	entrance := n.ServeEntrance(t, &gunshu.Entrance{Logger: zap.New(core), Username: "u", Password: "p"})
	var clients []string
	for _, creds := range []string{"u:p", "u:bad"} {
		conn, err := net.Dial("tcp", entrance)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, conn.LocalAddr().String())
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET http://%s/x HTTP/1.1\r\nProxy-Authorization: %s\r\n\r\n", responder, "Basic "+base64.StdEncoding.EncodeToString([]byte(creds)))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		conn.Close()
	}
	// One session line per client; debug lines come beside them.
	sessions := func() int { return logs.FilterMessage("session").Len() }
	deadline := time.Now().Add(5 * time.Second)
	for sessions() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if sessions() < 2 {
		t.Fatalf("%d session log lines, want 2", sessions())
	}
	authFailures := 0
	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		for _, c := range clients {
			if strings.Contains(line, c) {
				t.Errorf("log line names the client %s: %s", c, line)
			}
		}
		if strings.Contains(line, gunshu.ErrProxyAuth.Error()) {
			authFailures++
		}
	}
	if authFailures != 1 {
		t.Errorf("%d log lines name the authentication failure, want 1: %v", authFailures, logs.All())
	}
}

// TestEntranceProxyWithPrefetchedBytes serves proxy clients of which a
// matcher already read the first bytes, as a layer4 handler would.
func TestEntranceProxyWithPrefetchedBytes(t *testing.T) {
	n := testnet.New(t, 3)
	echo := testnet.EchoResponder(t)
	e := &gunshu.Entrance{Dialer: n.Dialer(3)}
	ln := testkit.Listen(t)
	const prefetch = 5
	testkit.Serve(t, ln, func(c net.Conn) {
		first := make([]byte, prefetch)
		if _, err := io.ReadFull(c, first); err != nil {
			c.Close()
			return
		}
		_ = e.ServeBuffered(c, first)
	})
	socks := socksConnect(echo)
	connect := []byte("CONNECT " + echo + " HTTP/1.1\r\n\r\n")
	for name, tc := range map[string]struct {
		request []byte
		answer  int // bytes of the entrance's answer before the echo
	}{
		"socks5":  {socks, 12},
		"connect": {connect, len("HTTP/1.1 200 Connection established\r\n\r\n")},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			// The payload goes in the same write as the request: it must
			// come out after the route opens, not be lost or answered early.
			c.Write(append(append([]byte(nil), tc.request...), "pipelined\n"...))
			c.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) < tc.answer || string(got[tc.answer:]) != "pipelined\n" {
				t.Fatalf("got %q", got)
			}
		})
	}
}
