package gunshu

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Errors of the proxy protocols an Entrance speaks when it has no fixed
// responder. They are wrapped with detail; test with errors.Is. None of
// them carries the client's address.
var (
	ErrProxyProtocol = errors.New("not a SOCKS5 or HTTP proxy request")
	ErrProxyRequest  = errors.New("malformed proxy request")
	ErrProxyAuth     = errors.New("proxy authentication failed")
	ErrProxyCommand  = errors.New("unsupported proxy command")
)

// proxyReaderSize is the buffer of a proxy handshake; anything the client
// sent past its request and that this buffer took is passed on first.
const proxyReaderSize = 4096

// credentials are the username and password an Entrance requires of proxy
// clients. Only their digests are kept, so comparing takes the same time
// whatever the lengths.
type credentials struct {
	user, pass [sha256.Size]byte
}

func newCredentials(user, pass string) *credentials {
	if user == "" && pass == "" {
		return nil
	}
	return &credentials{user: sha256.Sum256([]byte(user)), pass: sha256.Sum256([]byte(pass))}
}

// match reports whether user and pass are the required ones, in constant
// time.
func (c *credentials) match(user, pass []byte) bool {
	u, p := sha256.Sum256(user), sha256.Sum256(pass)
	return subtle.ConstantTimeCompare(u[:], c.user[:])&subtle.ConstantTimeCompare(p[:], c.pass[:]) == 1
}

// proxyKind says which protocol a client spoke.
type proxyKind int

const (
	proxySOCKS5 proxyKind = iota + 1
	proxyHTTPConnect
	proxyHTTPForward // a plain request in absolute form: GET http://host/...
)

// proxyRequest is what a proxy client asked for.
type proxyRequest struct {
	kind proxyKind
	// target is the responder, canonical per ParseAddr.
	target string
	// up are bytes for the responder before anything else the client
	// sends: a rewritten request head, and whatever the client sent past
	// its request.
	up []byte
}

// readProxyRequest detects the client's protocol from its first byte and
// reads its request: SOCKS5 (RFC 1928, with RFC 1929 username/password when
// creds is set), or an HTTP/1 proxy request, CONNECT or absolute-form. It
// answers a bad request itself, in the client's protocol, before it
// returns the error. buffered were read from conn before and come first.
func readProxyRequest(conn net.Conn, buffered []byte, creds *credentials) (*proxyRequest, error) {
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(buffered), conn), proxyReaderSize)
	first, err := br.Peek(1)
	if err != nil {
		return nil, fmt.Errorf("reading proxy request: %w", err)
	}
	var req *proxyRequest
	switch c := first[0]; {
	case c == socks5Version:
		req, err = readSOCKS5(br, conn, creds)
	case c >= 'A' && c <= 'Z':
		req, err = readHTTPProxy(br, conn, creds)
	case c == 4:
		err = fmt.Errorf("%w: SOCKS4 is not supported, use SOCKS5", ErrProxyProtocol)
	default:
		err = fmt.Errorf("%w: first byte 0x%02x", ErrProxyProtocol, c)
	}
	if err != nil {
		return nil, err
	}
	// Whatever the reader buffered past the request belongs to the stream.
	if n := br.Buffered(); n > 0 {
		rest, _ := br.Peek(n)
		req.up = append(req.up, rest...)
	}
	return req, nil
}

// answerRoute tells the client that its route is open (err nil) or could
// not be built.
func (r *proxyRequest) answerRoute(w io.Writer, err error) error {
	switch r.kind {
	case proxySOCKS5:
		return writeSOCKS5Reply(w, socksReplyFor(err))
	case proxyHTTPConnect:
		if err == nil {
			_, werr := io.WriteString(w, "HTTP/1.1 200 Connection established\r\n\r\n")
			return werr
		}
		return writeHTTPError(w, httpStatusFor(err), "no route to the responder")
	case proxyHTTPForward:
		if err != nil {
			return writeHTTPError(w, httpStatusFor(err), "no route to the responder")
		}
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// handshakeDeadline is when a proxy request that began at start must have
// been read and answered.
func handshakeDeadline(start time.Time, timeout time.Duration) time.Time {
	return start.Add(orDefault(timeout, DefaultCommandTimeout))
}
