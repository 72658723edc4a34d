package gunshu

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Bounds of an HTTP proxy request head.
const (
	maxProxyHead        = 16 << 10 // bytes, request line and headers
	maxProxyHeaderLines = 100
)

// httpProxyError is a bad HTTP proxy request and the status it earns.
type httpProxyError struct {
	status int
	err    error
}

func (e *httpProxyError) Error() string { return e.err.Error() }
func (e *httpProxyError) Unwrap() error { return e.err }

func badHTTP(status int, sentinel error, format string, args ...any) error {
	return &httpProxyError{status: status, err: fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)}
}

// headerField is one header line as received, name and value trimmed.
type headerField struct{ name, value string }

// httpHead is a parsed HTTP/1 request head.
type httpHead struct {
	method, target, proto string
	fields                []headerField
}

// readHTTPProxy reads an HTTP proxy request. CONNECT host:port opens a
// tunnel; a request in absolute form (GET http://host/path) is passed on
// in origin form with its hop-by-hop fields removed and "Connection:
// close", so the responder ends the connection after this one exchange
// and the client's next request, perhaps for another host, comes on a new
// connection and a new route. A bad request is answered here.
func readHTTPProxy(br *bufio.Reader, w io.Writer, creds *credentials) (*proxyRequest, error) {
	req, err := parseHTTPProxy(br, creds)
	if err != nil {
		var he *httpProxyError
		if errors.As(err, &he) {
			_ = writeHTTPError(w, he.status, he.err.Error())
		}
		return nil, err
	}
	return req, nil
}

func parseHTTPProxy(br *bufio.Reader, creds *credentials) (*proxyRequest, error) {
	head, err := readHTTPHead(br)
	if err != nil {
		return nil, err
	}
	if creds != nil && !head.authorized(creds) {
		return nil, badHTTP(http.StatusProxyAuthRequired, ErrProxyAuth, "missing or wrong Proxy-Authorization")
	}
	if head.method == http.MethodConnect {
		target, err := ParseAddr(head.target)
		if err != nil {
			return nil, badHTTP(http.StatusBadRequest, ErrProxyRequest, "CONNECT target: %w", err)
		}
		return &proxyRequest{kind: proxyHTTPConnect, target: target}, nil
	}
	return head.forwardRequest()
}

// forwardRequest turns an absolute-form request into the head the
// responder gets. The target is parsed as a URL (RFC 3986): an empty
// port ("http://host:/") is the default one, a fragment is dropped.
func (h *httpHead) forwardRequest() (*proxyRequest, error) {
	u, err := url.Parse(h.target)
	switch {
	case err != nil:
		return nil, badHTTP(http.StatusBadRequest, ErrProxyRequest, "request target: %w", err)
	case u.Scheme == "https":
		return nil, badHTTP(http.StatusBadRequest, ErrProxyRequest, "https URLs need CONNECT")
	case u.Scheme != "http" || u.Opaque != "" || u.Host == "":
		return nil, badHTTP(http.StatusBadRequest, ErrProxyRequest, "request target must be absolute http:// or CONNECT")
	case u.User != nil:
		return nil, badHTTP(http.StatusBadRequest, ErrProxyRequest, "user info in the URL")
	}
	port := cmp.Or(u.Port(), "80")
	target, err := ParseAddr(net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return nil, badHTTP(http.StatusBadRequest, ErrProxyRequest, "URL host: %w", err)
	}
	host := strings.TrimSuffix(u.Host, ":")
	return &proxyRequest{kind: proxyHTTPForward, target: target, up: h.originHead(host, u.RequestURI())}, nil
}

// hopByHop are the fields that concern only this connection (RFC 9110,
// 7.6.1), and Host, which is rewritten from the URL.
var hopByHop = map[string]bool{
	"connection": true, "proxy-connection": true, "keep-alive": true, "te": true,
	"upgrade": true, "proxy-authorization": true, "proxy-authenticate": true, "host": true,
}

// originHead writes the request head for the responder.
func (h *httpHead) originHead(host, path string) []byte {
	drop := map[string]bool{}
	for _, f := range h.fields {
		if strings.EqualFold(f.name, "Connection") {
			for _, tok := range strings.Split(f.value, ",") {
				drop[strings.ToLower(strings.TrimSpace(tok))] = true
			}
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s %s\r\nHost: %s\r\n", h.method, path, h.proto, host)
	for _, f := range h.fields {
		name := strings.ToLower(f.name)
		if hopByHop[name] || drop[name] {
			continue
		}
		fmt.Fprintf(&b, "%s: %s\r\n", f.name, f.value)
	}
	b.WriteString("Connection: close\r\n\r\n")
	return b.Bytes()
}

// authorized reports whether the request carries the required Basic
// Proxy-Authorization.
func (h *httpHead) authorized(creds *credentials) bool {
	for _, f := range h.fields {
		if !strings.EqualFold(f.name, "Proxy-Authorization") {
			continue
		}
		scheme, token, ok := strings.Cut(f.value, " ")
		if !ok || !strings.EqualFold(scheme, "Basic") {
			return false
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(token))
		if err != nil {
			return false
		}
		user, pass, ok := bytes.Cut(raw, []byte{':'})
		return ok && creds.match(user, pass)
	}
	return false
}

// readHTTPHead reads a request line and header fields, at most
// maxProxyHead bytes and maxProxyHeaderLines fields. It is strict where
// leniency would let the responder see a different request than this
// entrance did: no obsolete line folding, no space before a colon, no
// control characters, a Content-Length that is one plain number, not both
// Content-Length and Transfer-Encoding.
func readHTTPHead(br *bufio.Reader) (*httpHead, error) {
	budget := maxProxyHead
	line, err := readHTTPLine(br, &budget)
	if err != nil {
		return nil, fmt.Errorf("reading HTTP request line: %w", err)
	}
	h, err := parseRequestLine(line)
	if err != nil {
		return nil, err
	}
	var (
		length      string
		hasLength   bool
		hasEncoding bool
	)
	for {
		line, err := readHTTPLine(br, &budget)
		if err != nil {
			return nil, fmt.Errorf("reading HTTP header: %w", err)
		}
		if line == "" {
			break
		}
		if len(h.fields) == maxProxyHeaderLines {
			return nil, badHTTP(http.StatusRequestHeaderFieldsTooLarge, ErrProxyRequest, "more than %d header fields", maxProxyHeaderLines)
		}
		f, err := parseHeaderField(line)
		if err != nil {
			return nil, err
		}
		if strings.EqualFold(f.name, "Content-Length") {
			// The responder must frame the body exactly as this entrance
			// passes it on: one plain decimal length, repeated only as is.
			if !isDecimal(f.value) || hasLength && f.value != length {
				return nil, badHTTP(http.StatusBadRequest, ErrProxyRequest, "bad Content-Length %.20q", f.value)
			}
			length, hasLength = f.value, true
		}
		hasEncoding = hasEncoding || strings.EqualFold(f.name, "Transfer-Encoding")
		h.fields = append(h.fields, f)
	}
	if hasLength && hasEncoding {
		return nil, badHTTP(http.StatusBadRequest, ErrProxyRequest, "both Content-Length and Transfer-Encoding")
	}
	return h, nil
}

var errHeadTooLarge = &httpProxyError{
	status: http.StatusRequestHeaderFieldsTooLarge,
	err:    fmt.Errorf("%w: request head over %d bytes", ErrProxyRequest, maxProxyHead),
}

// readHTTPLine reads one line ending in LF (CRLF or a bare LF), charging
// it to budget, and returns it without its ending.
func readHTTPLine(br *bufio.Reader, budget *int) (string, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > *budget {
			return "", errHeadTooLarge
		}
		*budget -= len(chunk)
		line = append(line, chunk...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
	return string(line), nil
}

func parseRequestLine(line string) (*httpHead, error) {
	parts := strings.Split(line, " ")
	if len(parts) != 3 || !isToken(parts[0]) || parts[1] == "" || hasCTLOrSpace(parts[1]) {
		return nil, badHTTP(http.StatusBadRequest, ErrProxyRequest, "malformed request line %.60q", line)
	}
	if parts[2] != "HTTP/1.1" && parts[2] != "HTTP/1.0" {
		return nil, badHTTP(http.StatusHTTPVersionNotSupported, ErrProxyRequest, "version %.20q", parts[2])
	}
	return &httpHead{method: parts[0], target: parts[1], proto: parts[2]}, nil
}

func parseHeaderField(line string) (headerField, error) {
	name, value, ok := strings.Cut(line, ":")
	if !ok || !isToken(name) {
		return headerField{}, badHTTP(http.StatusBadRequest, ErrProxyRequest, "malformed header field %.60q", line)
	}
	value = strings.Trim(value, " \t")
	for _, c := range []byte(value) {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return headerField{}, badHTTP(http.StatusBadRequest, ErrProxyRequest, "control character in field %.40q", name)
		}
	}
	return headerField{name: name, value: value}, nil
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// isDecimal reports whether s is 1 to 18 ASCII digits: a length that
// fits an int64, with no sign, space or list.
func isDecimal(s string) bool {
	if s == "" || len(s) > 18 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func hasCTLOrSpace(s string) bool {
	for _, c := range []byte(s) {
		if c <= ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

// writeHTTPError answers a proxy client with status and a one-line
// plain-text reason, and asks it to close.
func writeHTTPError(w io.Writer, status int, reason string) error {
	body := reason + "\n"
	auth := ""
	if status == http.StatusProxyAuthRequired {
		auth = "Proxy-Authenticate: Basic realm=\"gunshu\", charset=\"UTF-8\"\r\n"
	}
	_, err := fmt.Fprintf(w, "HTTP/1.1 %d %s\r\n%sContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), auth, len(body), body)
	return err
}

// httpStatusFor maps a route failure to a status.
func httpStatusFor(err error) int {
	switch {
	case isTimeout(err):
		return http.StatusGatewayTimeout
	case errors.Is(err, ErrPolicyDenied):
		return http.StatusForbidden
	}
	return http.StatusBadGateway
}
