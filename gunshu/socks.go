package gunshu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
)

// SOCKS5 constants (RFC 1928, RFC 1929).
const (
	socks5Version       = 5
	socksUserPassVer    = 1
	socksMethodNoAuth   = 0
	socksMethodUserPass = 2
	socksMethodNone     = 0xff
	socksCmdConnect     = 1
	socksAtypIPv4       = 1
	socksAtypDomain     = 3
	socksAtypIPv6       = 4
)

// SOCKS5 reply codes.
const (
	socksSucceeded          = 0
	socksGeneralFailure     = 1
	socksNotAllowed         = 2
	socksHostUnreachable    = 4
	socksTTLExpired         = 6
	socksCommandUnsupported = 7
	socksAddrUnsupported    = 8
)

// readSOCKS5 performs the server side of a SOCKS5 handshake up to the
// CONNECT request: method selection, username/password authentication
// when creds is set, and the request. Only CONNECT is served; BIND and UDP
// ASSOCIATE are answered "command not supported". A domain name is passed
// on unresolved, so no name of the user's ever reaches a local resolver.
func readSOCKS5(br *bufio.Reader, w io.Writer, creds *credentials) (*proxyRequest, error) {
	if err := socksNegotiate(br, w, creds); err != nil {
		return nil, err
	}
	var head [4]byte // VER CMD RSV ATYP
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return nil, fmt.Errorf("reading SOCKS5 request: %w", err)
	}
	if head[0] != socks5Version {
		_ = writeSOCKS5Reply(w, socksGeneralFailure)
		return nil, fmt.Errorf("%w: SOCKS5 request version %d", ErrProxyRequest, head[0])
	}
	target, err := readSOCKSAddr(br, head[3])
	if err != nil {
		// A stream that ended or timed out gets no answer; a bad address does.
		switch {
		case errors.Is(err, errSOCKSAddrType):
			_ = writeSOCKS5Reply(w, socksAddrUnsupported)
		case errors.Is(err, ErrProxyRequest):
			_ = writeSOCKS5Reply(w, socksGeneralFailure)
		}
		return nil, err
	}
	if head[1] != socksCmdConnect {
		_ = writeSOCKS5Reply(w, socksCommandUnsupported)
		return nil, fmt.Errorf("%w: SOCKS5 command %d (only CONNECT)", ErrProxyCommand, head[1])
	}
	return &proxyRequest{kind: proxySOCKS5, target: target}, nil
}

// socksNegotiate reads the client's methods, selects one and, for
// username/password, checks the credentials.
func socksNegotiate(br *bufio.Reader, w io.Writer, creds *credentials) error {
	var hello [2]byte // VER NMETHODS
	if _, err := io.ReadFull(br, hello[:]); err != nil {
		return fmt.Errorf("reading SOCKS5 greeting: %w", err)
	}
	methods := make([]byte, hello[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return fmt.Errorf("reading SOCKS5 methods: %w", err)
	}
	want := byte(socksMethodNoAuth)
	if creds != nil {
		want = socksMethodUserPass
	}
	if !slices.Contains(methods, want) {
		_, _ = w.Write([]byte{socks5Version, socksMethodNone})
		if creds != nil {
			return fmt.Errorf("%w: SOCKS5 client offers no username/password method", ErrProxyAuth)
		}
		return fmt.Errorf("%w: SOCKS5 client offers no 'no authentication' method", ErrProxyRequest)
	}
	if _, err := w.Write([]byte{socks5Version, want}); err != nil {
		return fmt.Errorf("answering SOCKS5 greeting: %w", err)
	}
	if creds == nil {
		return nil
	}
	return socksAuthenticate(br, w, creds)
}

// socksAuthenticate runs the RFC 1929 subnegotiation.
func socksAuthenticate(br *bufio.Reader, w io.Writer, creds *credentials) error {
	ver, err := br.ReadByte()
	if err != nil {
		return fmt.Errorf("reading SOCKS5 authentication: %w", err)
	}
	if ver != socksUserPassVer {
		_, _ = w.Write([]byte{socksUserPassVer, 1})
		return fmt.Errorf("%w: SOCKS5 authentication version %d", ErrProxyRequest, ver)
	}
	user, err := readSOCKSString(br)
	if err != nil {
		return fmt.Errorf("reading SOCKS5 username: %w", err)
	}
	pass, err := readSOCKSString(br)
	if err != nil {
		return fmt.Errorf("reading SOCKS5 password: %w", err)
	}
	if !creds.match(user, pass) {
		_, _ = w.Write([]byte{socksUserPassVer, 1})
		return fmt.Errorf("%w: wrong SOCKS5 username or password", ErrProxyAuth)
	}
	if _, err := w.Write([]byte{socksUserPassVer, 0}); err != nil {
		return fmt.Errorf("answering SOCKS5 authentication: %w", err)
	}
	return nil
}

// readSOCKSString reads a length-prefixed string of 0..255 bytes.
func readSOCKSString(br *bufio.Reader) ([]byte, error) {
	n, err := br.ReadByte()
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return nil, err
	}
	return b, nil
}

var errSOCKSAddrType = fmt.Errorf("%w: unknown SOCKS5 address type", ErrProxyRequest)

// readSOCKSAddr reads DST.ADDR of type atyp and DST.PORT, and returns the
// address in ParseAddr's canonical form.
func readSOCKSAddr(br *bufio.Reader, atyp byte) (string, error) {
	var host string
	switch atyp {
	case socksAtypIPv4, socksAtypIPv6:
		b := make([]byte, 4)
		if atyp == socksAtypIPv6 {
			b = make([]byte, 16)
		}
		if _, err := io.ReadFull(br, b); err != nil {
			return "", fmt.Errorf("reading SOCKS5 address: %w", err)
		}
		ip, _ := netip.AddrFromSlice(b)
		host = ip.String()
	case socksAtypDomain:
		name, err := readSOCKSString(br)
		if err != nil {
			return "", fmt.Errorf("reading SOCKS5 domain name: %w", err)
		}
		host = string(name)
	default:
		return "", fmt.Errorf("%w %d", errSOCKSAddrType, atyp)
	}
	var port [2]byte
	if _, err := io.ReadFull(br, port[:]); err != nil {
		return "", fmt.Errorf("reading SOCKS5 port: %w", err)
	}
	p := int(port[0])<<8 | int(port[1])
	addr, err := ParseAddr(net.JoinHostPort(host, strconv.Itoa(p)))
	if err != nil {
		return "", fmt.Errorf("%w: SOCKS5 destination: %w", ErrProxyRequest, err)
	}
	return addr, nil
}

// writeSOCKS5Reply sends a reply with code. The bound address is always
// 0.0.0.0:0: the entrance's own addresses are no business of the client's
// route and tell it nothing it needs.
func writeSOCKS5Reply(w io.Writer, code byte) error {
	_, err := w.Write([]byte{socks5Version, code, 0, socksAtypIPv4, 0, 0, 0, 0, 0, 0})
	return err
}

// socksReplyFor maps a route's outcome to a SOCKS5 reply code.
func socksReplyFor(err error) byte {
	switch {
	case err == nil:
		return socksSucceeded
	case errors.Is(err, ErrPolicyDenied):
		return socksNotAllowed
	case isTimeout(err), errors.Is(err, context.DeadlineExceeded):
		return socksTTLExpired
	case errors.Is(err, ErrNoRelays):
		return socksGeneralFailure
	}
	return socksHostUnreachable
}
