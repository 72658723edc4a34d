package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The clients below are the bench's own: none imports the code under
// test, so one harness measures any tree. Each makes one HTTP GET on a
// fresh connection and returns the time from dialing its first link to
// the first byte of the HTTP response.

// ttfbPath is what the site answers with ttfbBody; every client checks
// that it got exactly that page back.
const (
	ttfbPath = "/ttfb"
	ttfbBody = "wan ttfb ok"
)

// maxResponse bounds what a client reads of a response.
const maxResponse = 1 << 20

// session is one client connection and the moment its dial began.
type session struct {
	conn  *net.TCPConn
	br    *bufio.Reader
	start time.Time
}

func dialSession(ctx context.Context, addr string) (*session, error) {
	start := time.Now()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	return &session{conn: c.(*net.TCPConn), br: bufio.NewReader(c), start: start}, nil
}

func (s *session) write(parts ...[]byte) error {
	_, err := s.conn.Write(bytes.Join(parts, nil))
	return err
}

// response waits for the first byte of the HTTP response, then reads the
// whole response (the site closes after it) and checks it.
func (s *session) response() (time.Duration, error) {
	defer s.conn.Close()
	if _, err := s.br.Peek(1); err != nil {
		return 0, fmt.Errorf("waiting for the response: %w", err)
	}
	ttfb := time.Since(s.start)
	resp, err := io.ReadAll(io.LimitReader(s.br, maxResponse))
	if err != nil {
		return 0, fmt.Errorf("reading the response: %w", err)
	}
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 200 ")) || !bytes.HasSuffix(resp, []byte(ttfbBody)) {
		return 0, fmt.Errorf("unexpected response %q", truncate(resp, 200))
	}
	return ttfb, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// getRequest is an origin-form GET of ttfbPath; target, when set, makes it
// an absolute-form request for an HTTP proxy.
func getRequest(host, target string) []byte {
	uri := ttfbPath
	if target != "" {
		uri = "http://" + target + ttfbPath
	}
	return []byte("GET " + uri + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: wanbench\r\nConnection: close\r\n\r\n")
}

// plainGET sends the request straight to addr: the direct row, the
// minimal relays and the fixed entrance. host is the site's address as the
// request names it.
func plainGET(ctx context.Context, addr, host string) (time.Duration, error) {
	s, err := dialSession(ctx, addr)
	if err != nil {
		return 0, err
	}
	if err := s.write(getRequest(host, "")); err != nil {
		s.conn.Close()
		return 0, err
	}
	return s.response()
}

// proxyGET sends an absolute-form GET for target to the HTTP proxy at addr.
func proxyGET(ctx context.Context, addr, target string) (time.Duration, error) {
	s, err := dialSession(ctx, addr)
	if err != nil {
		return 0, err
	}
	if err := s.write(getRequest(target, target)); err != nil {
		s.conn.Close()
		return 0, err
	}
	return s.response()
}

// socksGET asks the SOCKS5 proxy at addr for target. A curl-style client
// (pipelined false) waits for the CONNECT reply before it sends its
// request; a pipelined one (Tor Browser's optimistic data) sends the
// request right behind CONNECT. Both wait for the method reply first.
func socksGET(ctx context.Context, addr, target string, pipelined bool) (time.Duration, error) {
	connect, err := socksConnect(target)
	if err != nil {
		return 0, err
	}
	s, err := dialSession(ctx, addr)
	if err != nil {
		return 0, err
	}
	fail := func(err error) (time.Duration, error) { s.conn.Close(); return 0, err }
	if err := s.write([]byte{5, 1, 0}); err != nil {
		return fail(err)
	}
	var method [2]byte
	if _, err := io.ReadFull(s.br, method[:]); err != nil {
		return fail(fmt.Errorf("reading the SOCKS5 method: %w", err))
	}
	if method != [2]byte{5, 0} {
		return fail(fmt.Errorf("SOCKS5 method reply %x", method))
	}
	req := getRequest(target, "")
	if pipelined {
		err = s.write(connect, req)
	} else {
		err = s.write(connect)
	}
	if err != nil {
		return fail(err)
	}
	if err := readSOCKSReply(s.br); err != nil {
		return fail(err)
	}
	if !pipelined {
		if err := s.write(req); err != nil {
			return fail(err)
		}
	}
	return s.response()
}

// socksConnect is a SOCKS5 CONNECT request for an IPv4 target.
func socksConnect(target string) ([]byte, error) {
	ap, err := netip.ParseAddrPort(target)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("SOCKS5 target %q: want IPv4 address:port", target)
	}
	ip := ap.Addr().As4()
	req := append([]byte{5, 1, 0, 1}, ip[:]...)
	return binary.BigEndian.AppendUint16(req, ap.Port()), nil
}

func readSOCKSReply(br *bufio.Reader) error {
	var head [4]byte // VER REP RSV ATYP
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return fmt.Errorf("reading the SOCKS5 reply: %w", err)
	}
	if head[0] != 5 || head[1] != 0 {
		return fmt.Errorf("SOCKS5 reply %x", head)
	}
	var n int
	switch head[3] {
	case 1:
		n = 4
	case 4:
		n = 16
	case 3:
		l, err := br.ReadByte()
		if err != nil {
			return err
		}
		n = int(l)
	default:
		return fmt.Errorf("SOCKS5 reply address type %d", head[3])
	}
	_, err := br.Discard(n + 2)
	return err
}

// gunshu2003GET is the 2003 initiator: it offers every relay of the list
// (the first hop drawn from them, the responder merged into the rest at a
// random position, so the route holds 1 to len(relays) relays, each length
// equally likely), sends est and waits for ok, then sends forward and the
// request.
func gunshu2003GET(ctx context.Context, rnd *rand.Rand, relays []string, responder string) (time.Duration, error) {
	if len(relays) == 0 {
		return 0, errors.New("no relays")
	}
	rest := append([]string(nil), relays...)
	rnd.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	first, rest := rest[0], rest[1:]
	rest = append(rest, responder)
	pos := rnd.IntN(len(rest))
	rest[pos], rest[len(rest)-1] = rest[len(rest)-1], rest[pos]

	s, err := dialSession(ctx, first)
	if err != nil {
		return 0, err
	}
	fail := func(err error) (time.Duration, error) { s.conn.Close(); return 0, err }
	est := "est\n" + strconv.Itoa(len(rest)) + "\n" + strings.Join(rest, "\n") + "\n"
	if err := s.write([]byte(est)); err != nil {
		return fail(err)
	}
	line, err := s.br.ReadString('\n')
	if err != nil {
		return fail(fmt.Errorf("waiting for ok: %w", err))
	}
	if strings.TrimSpace(line) != "ok" {
		return fail(fmt.Errorf("route answered %q", line))
	}
	if err := s.write([]byte("forward\n"), getRequest(responder, "")); err != nil {
		return fail(err)
	}
	return s.response()
}

// fetchList asks a manager for its list, as an initiator does.
func fetchList(ctx context.Context, manager string) ([]string, error) {
	s, err := dialSession(ctx, manager)
	if err != nil {
		return nil, err
	}
	defer s.conn.Close()
	if err := s.write([]byte("list\n")); err != nil {
		return nil, err
	}
	line, err := s.br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("reading the list count: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || n < 0 || n > 1024 {
		return nil, fmt.Errorf("list count %q", line)
	}
	list := make([]string, 0, n)
	for range n {
		line, err := s.br.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("reading the list: %w", err)
		}
		list = append(list, strings.TrimSpace(line))
	}
	return list, nil
}
