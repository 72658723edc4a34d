package caddymodule

import (
	"fmt"
	"io"
	"net"

	"github.com/caddyserver/caddy/v2"
	"github.com/mholt/caddy-l4/layer4"

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
