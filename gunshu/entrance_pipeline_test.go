package gunshu_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// bannerResponder is a responder whose application speaks first: it
// writes a banner, then echoes.
func bannerResponder(t testing.TB, banner string) string {
	return testnet.AppResponder(t, func(c net.Conn) {
		if _, err := io.WriteString(c, banner); err == nil {
			_, _ = io.Copy(c, c)
		}
	})
}

// TestEntranceSilentClients (#16.7): a fixed entrance builds few routes
// for clients that leave before sending a byte, and holds at most
// MaxSilent routes for clients that stay silent; a protocol whose server
// speaks first still works.
func TestEntranceSilentClients(t *testing.T) {
	const maxSilent = 3
	relayObs := &testnet.SessionLog{}
	relay := fixedRelay(t, false, relayObs, gunshu.Timeouts{})
	responder := bannerResponder(t, "220 ready\r\n")
	mgr := listManager(t, func() []string { return []string{relay} })
	rec := newRecorder()
	entrance := serveEntrance(t, &gunshu.Entrance{
		Dialer:           &gunshu.Dialer{Manager: mgr, ListTTL: -1},
		Responder:        responder,
		SilentWait:       100 * time.Millisecond,
		MaxSilent:        maxSilent,
		HandshakeTimeout: time.Second,
		Observer:         rec,
	})

	// 50 connections that close at once: routes start at accept only
	// while the budget of wasted ones lasts (maxSilent, then one a
	// second).
	begin := time.Now()
	for range 50 {
		c := dialRaw(t, entrance)
		c.Close()
	}
	var entranceSessions []string
	for range 50 {
		s := rec.next(t)
		entranceSessions = append(entranceSessions, fmt.Sprintf("%s after %v (%v)", s.Outcome, s.Duration, s.Err))
	}
	bound := maxSilent + 1 + int64(time.Since(begin)/time.Second)
	if n := relayObs.Started.Load(); n > bound {
		t.Fatalf("%d route hops for 50 empty connections, want at most %d; the relay's sessions:\n%s\nthe entrance's:\n%s",
			n, bound, relayObs, strings.Join(entranceSessions, "\n"))
	}

	// A server-speaks-first protocol: the banner comes although the
	// client sends nothing first.
	c := dialRaw(t, entrance)
	banner := make([]byte, len("220 ready\r\n"))
	if _, err := io.ReadFull(c, banner); err != nil || string(banner) != "220 ready\r\n" {
		t.Fatalf("banner %q, %v", banner, err)
	}
	writeRaw(t, c, "QUIT\r\n")
	_ = c.CloseWrite()
	if got := readToEnd(t, c); got != "QUIT\r\n" {
		t.Fatalf("echo %q", got)
	}
	if s := rec.next(t); s.Outcome != gunshu.OutcomeOK {
		t.Fatalf("server-first session: %+v", s)
	}

	// 12 clients that stay silent: maxSilent routes, the rest reset
	// after the handshake timeout.
	relayObs.Started.Store(0)
	silent := make([]*net.TCPConn, 12)
	for i := range silent {
		silent[i] = dialRaw(t, entrance)
	}
	limited := 0
	for range len(silent) - maxSilent {
		s := rec.next(t)
		if s.Outcome != gunshu.OutcomeLimited {
			t.Fatalf("silent client over the bound: %+v (%v)", s, s.Err)
		}
		limited++
	}
	// The others were reset, so no more routes can come.
	testkit.Eventually(t, 5*time.Second, "the silent clients' routes", func() bool { return relayObs.Started.Load() >= maxSilent })
	if n := relayObs.Started.Load(); n != maxSilent {
		t.Fatalf("%d route hops for %d silent clients, want %d", n, len(silent), maxSilent)
	}
	for _, c := range silent {
		c.Close()
	}
}

// SOCKS5 bytes (RFC 1928) the tests send and expect.
var (
	socksHello       = []byte{5, 1, 0} // one method: no authentication
	socksChoseNoAuth = []byte{5, 0}
	socksSucceeded   = byte(0)
	socksUnreachable = byte(4)
)

func socksReply(code byte) []byte { return []byte{5, code, 0, 1, 0, 0, 0, 0, 0, 0} }

func socksConnectDomain(name string, port uint16) []byte {
	return append(append([]byte{5, 1, 0, 3, byte(len(name))}, name...), byte(port>>8), byte(port))
}

// socksHandshake sends a SOCKS5 greeting and reads the method reply.
func socksHandshake(t testing.TB, c net.Conn) {
	t.Helper()
	writeRaw(t, c, string(socksHello))
	got := make([]byte, 2)
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, socksChoseNoAuth) {
		t.Fatalf("method reply %v, %v", got, err)
	}
}

func socksConnectTo(t testing.TB, addr string) []byte {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return socksConnectDomain(host, uint16(p))
}

// TestEntranceSOCKS5OptimisticData: a client that sends its data right
// behind CONNECT (as Tor Browser does) gets the success reply and then
// the answer, the data having left with est.
func TestEntranceSOCKS5OptimisticData(t *testing.T) {
	relay := fixedRelay(t, false, nil, gunshu.Timeouts{})
	var received atomic.Int64
	responder := digestResponder(t, &received)
	mgr := listManager(t, func() []string { return []string{relay} })
	for _, early := range []bool{false, true} {
		entrance := serveEntrance(t, &gunshu.Entrance{Dialer: &gunshu.Dialer{Manager: mgr}, EarlyReply: early})
		c := dialRaw(t, entrance)
		socksHandshake(t, c)
		payload := randomBytes(9, 5000)
		writeRaw(t, c, string(socksConnectTo(t, responder))+string(payload))
		_ = c.CloseWrite()
		got := []byte(readToEnd(t, c))
		digest := sha256Sum(payload)
		if want := append(socksReply(socksSucceeded), digest...); !bytes.Equal(got, want) {
			t.Fatalf("early %v: got %x, want the success reply and %x", early, got, want)
		}
	}
}

// TestEntranceEarlyReply: with EarlyReply the success reply goes before
// the route's ok (here: a route that never comes), and a failed route
// then ends with a reset; without it the client gets the failure code.
func TestEntranceEarlyReply(t *testing.T) {
	failer := cannedServer(t, "fail\n", false)
	mgr := listManager(t, func() []string { return []string{failer} })
	dialer := func() *gunshu.Dialer { return &gunshu.Dialer{Manager: mgr, Attempts: 1, ListTTL: -1} }
	for _, c := range []struct {
		early bool
		want  []byte
	}{
		{false, socksReply(socksUnreachable)},
		{true, socksReply(socksSucceeded)},
	} {
		entrance := serveEntrance(t, &gunshu.Entrance{Dialer: dialer(), EarlyReply: c.early})
		conn := dialRaw(t, entrance)
		socksHandshake(t, conn)
		writeRaw(t, conn, string(socksConnectDomain("responder.example", 80)))
		got, err := io.ReadAll(conn)
		if !bytes.Equal(got, c.want) {
			t.Fatalf("early %v: got %v (%v), want %v", c.early, got, err, c.want)
		}
		if c.early && !isReset(err) {
			t.Fatalf("early reply, failed route: %v, want a reset", err)
		}
	}
	// HTTP CONNECT the same way.
	for _, c := range []struct {
		early bool
		want  string
	}{
		{false, "HTTP/1.1 502 "},
		{true, "HTTP/1.1 200 Connection established\r\n\r\n"},
	} {
		entrance := serveEntrance(t, &gunshu.Entrance{Dialer: dialer(), EarlyReply: c.early})
		conn := dialRaw(t, entrance)
		writeRaw(t, conn, "CONNECT responder.example:80 HTTP/1.1\r\nHost: responder.example:80\r\n\r\n")
		got, err := io.ReadAll(conn)
		if !strings.HasPrefix(string(got), c.want) || c.early && string(got) != c.want {
			t.Fatalf("early %v: got %q (%v), want %q", c.early, got, err, c.want)
		}
	}
}

// TestEntrancePipelinedConcurrent runs many pipelined sessions through a
// small network at once, each checked end to end.
func TestEntrancePipelinedConcurrent(t *testing.T) {
	n := testnet.New(t, 4)
	var received atomic.Int64
	responder := digestResponder(t, &received)
	entrance := serveEntrance(t, &gunshu.Entrance{Dialer: n.Dialer(5), Responder: responder})
	var wg sync.WaitGroup
	errs := make(chan string, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", entrance, 2*time.Second)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			payload := randomBytes(uint64(i), 1000*(i+1))
			go func() {
				_, _ = c.Write(payload)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if want := sha256Sum(payload); !bytes.Equal(got, want) {
				errs <- "digest mismatch: " + strconv.Itoa(len(got)) + " bytes, " + errString(err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
