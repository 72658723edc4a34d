package caddymodule

import (
	"fmt"
	"io"
	"net"

	"github.com/caddyserver/caddy/v2"
	"github.com/mholt/caddy-l4/layer4"
	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// detach hands a layer4 connection over to a Gunshu session: it reads out
// the bytes caddy-l4 buffered while matching and returns them with the
// underlying connection. The session then reads the socket directly, so
// between two TCP sockets its forward path runs in the kernel (splice)
// instead of through caddy-l4's buffered reader.
func detach(cx *layer4.Connection) (net.Conn, []byte, error) {
	n := len(cx.MatchingBytes())
	if n == 0 {
		return cx.Conn, nil, nil
	}
	buffered := make([]byte, n)
	if _, err := io.ReadFull(cx, buffered); err != nil {
		return nil, nil, fmt.Errorf("draining matched bytes: %w", err)
	}
	return cx.Conn, buffered, nil
}

// detachOrLog is detach for a handler: a connection it cannot take over
// is logged at debug level as "<what> not started", without addresses,
// and ok is false.
func detachOrLog(cx *layer4.Connection, log *zap.Logger, what string) (conn net.Conn, buffered []byte, ok bool) {
	conn, buffered, err := detach(cx)
	if err != nil {
		log.Debug(what+" not started", zap.String("error", gunshu.RedactedError(err)))
		return nil, nil, false
	}
	return conn, buffered, true
}

// bufferedServer serves a connection of which some bytes were already
// read: a gunshu Manager, Relay or Entrance.
type bufferedServer interface {
	ServeBuffered(conn net.Conn, buffered []byte) error
}

// serveDetached serves cx on its underlying socket. The server logs its
// sessions itself, without addresses; its error is dropped so that
// handlers return nil (caddy-l4 logs the peer's address with an error).
func serveDetached(cx *layer4.Connection, log *zap.Logger, what string, server bufferedServer) {
	if conn, buffered, ok := detachOrLog(cx, log, what); ok {
		_ = server.ServeBuffered(conn, buffered)
	}
}

// serveHandedOff is serveDetached for sessions that live long (a relay's
// route, an entrance's client): the session runs on a duplicate of the
// socket, on a goroutine of its own, and the handler returns at once. So
// what caddy-l4 keeps per connection while its handler runs (its prefetch
// buffer, a replacer, maps and contexts, and a goroutine whose stack holds
// the whole handler chain) goes back as soon as the session has started:
// measured with bench/ (BenchmarkPeakMemory/caddy1), a relayed session's
// peak memory in Caddy falls from 19 KiB to 14–15. A socket that cannot
// be duplicated is served in place.
func serveHandedOff(cx *layer4.Connection, log *zap.Logger, what string, server bufferedServer) {
	conn, buffered, ok := detachOrLog(cx, log, what)
	if !ok {
		return
	}
	own, err := duplicate(conn)
	if err != nil {
		log.Debug(what+" served in place", zap.String("error", gunshu.RedactedError(err)))
		_ = server.ServeBuffered(conn, buffered)
		return
	}
	go func() { _ = server.ServeBuffered(own, buffered) }()
}

// duplicate returns a connection on a duplicate of conn's socket: closing
// conn (as caddy-l4 does when the handler returns) then leaves the socket
// open.
func duplicate(conn net.Conn) (net.Conn, error) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil, fmt.Errorf("a %T is not a TCP connection", conn)
	}
	f, err := tc.File()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return net.FileConn(f)
}

// resolveAddr expands placeholders such as {env.RELAY_ADDR} in a host:port
// and returns it in Gunshu's canonical form.
func resolveAddr(repl *caddy.Replacer, field, raw string) (string, error) {
	expanded, err := repl.ReplaceOrErr(raw, true, true)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	addr, err := gunshu.ParseAddr(expanded)
	if err != nil {
		if expanded != raw {
			return "", fmt.Errorf("%s: %q (from %q): %w", field, expanded, raw, err)
		}
		return "", fmt.Errorf("%s: %w", field, err)
	}
	return addr, nil
}

// resolveAddrs is resolveAddr for a list.
func resolveAddrs(repl *caddy.Replacer, field string, raw []string) ([]string, error) {
	out := make([]string, 0, len(raw))
	for i, r := range raw {
		a, err := resolveAddr(repl, fmt.Sprintf("%s[%d]", field, i), r)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}
