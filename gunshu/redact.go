package gunshu

import (
	"net"
	"net/netip"
	"strings"
)

// Redacted stands for an address cut out of a text.
const Redacted = "[address]"

// RedactedError is err's text with every address cut out: what a relay,
// a responder or an entrance may log. The socket addresses of a
// *net.OpError go with their separator ("read tcp 192.0.2.1:7001->
// 198.51.100.7:50123: i/o timeout" becomes "read tcp: i/o timeout"), a
// *net.DNSError keeps only its reason, and then RedactText replaces any
// address left (in our own messages, or in bytes a peer sent) with
// Redacted. The far address of an accepted connection, the next hop and
// the destination are exactly what these logs must not write down.
func RedactedError(err error) string {
	msg := err.Error()
	walkErrors(err, func(e error) {
		switch e := e.(type) {
		case *net.OpError:
			if e.Source != nil || e.Addr != nil {
				bare := &net.OpError{Op: e.Op, Net: e.Net, Err: e.Err}
				msg = strings.ReplaceAll(msg, e.Error(), bare.Error())
			}
		case *net.DNSError:
			msg = strings.ReplaceAll(msg, e.Error(), "lookup: "+e.Err)
		}
	})
	return RedactText(msg)
}

func walkErrors(err error, visit func(error)) {
	if err == nil {
		return
	}
	visit(err)
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		walkErrors(u.Unwrap(), visit)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walkErrors(e, visit)
		}
	}
}

// RedactText replaces every address in s with Redacted: IPv4 and IPv6
// addresses, with or without a port, bracketed or not, zoned or not, and
// host names followed by a port ("relay.example.net:7001"). A bare host
// name cannot be told from a word, so texts meant for logs name a host
// with its port.
func RedactText(s string) string {
	var b strings.Builder
	rest := s
	for {
		i := strings.IndexFunc(rest, isAddrChar)
		if i < 0 {
			b.WriteString(rest)
			return b.String()
		}
		b.WriteString(rest[:i])
		rest = rest[i:]
		j := strings.IndexFunc(rest, func(r rune) bool { return !isAddrChar(r) })
		if j < 0 {
			j = len(rest)
		}
		b.WriteString(redactToken(rest[:j]))
		rest = rest[j:]
	}
}

// isAddrChar reports the characters an address token is made of.
func isAddrChar(r rune) bool {
	return r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' ||
		r == '.' || r == ':' || r == '[' || r == ']' || r == '%' || r == '-' || r == '_'
}

// redactToken replaces the address inside tok, keeping punctuation around
// it (a colon or full stop after one, the "-" of "->" between two).
func redactToken(tok string) string {
	if isAddress(tok) {
		return Redacted
	}
	// "::1" starts with what may be punctuation elsewhere: trim only
	// what no address ends with, then what none starts with.
	core := strings.TrimRight(tok, "-.:")
	if isAddress(core) {
		return Redacted + tok[len(core):]
	}
	lead := len(core) - len(strings.TrimLeft(core, "-.:"))
	if isAddress(core[lead:]) {
		return tok[:lead] + Redacted + tok[len(core):]
	}
	return tok
}

// isAddress reports an IP address, an IP address and port, or a host name
// and port.
func isAddress(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	if _, err := netip.ParseAddrPort(s); err == nil {
		return true
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || port == "" || strings.Trim(port, "0123456789") != "" {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return isDNSName(host) && strings.ContainsAny(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
}
