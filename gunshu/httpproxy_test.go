package gunshu

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func httpRead(input string, creds *credentials) (*proxyRequest, string, error) {
	var out bytes.Buffer
	req, err := readHTTPProxy(bufio.NewReader(strings.NewReader(input)), &out, creds)
	return req, out.String(), err
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestHTTPProxyConnect(t *testing.T) {
	req, out, err := httpRead("CONNECT Example.net:443 HTTP/1.1\r\nHost: example.net:443\r\n\r\n", nil)
	if err != nil || out != "" {
		t.Fatalf("err %v, wrote %q", err, out)
	}
	if req.kind != proxyHTTPConnect || req.target != "example.net:443" || req.up != nil {
		t.Fatalf("got %+v", req)
	}
}

func TestHTTPProxyAbsoluteForm(t *testing.T) {
	input := "POST http://127.0.0.1:7100/a/b?x=1 HTTP/1.1\r\n" +
		"Host: wrong.example\r\n" +
		"User-Agent: test\r\n" +
		"Proxy-Connection: keep-alive\r\n" +
		"Proxy-Authorization: " + basic("u", "p") + "\r\n" +
		"Connection: keep-alive, X-Private\r\n" +
		"X-Private: secret\r\n" +
		"Transfer-Encoding: chunked\r\n" +
		"\r\n"
	req, out, err := httpRead(input, newCredentials("u", "p"))
	if err != nil || out != "" {
		t.Fatalf("err %v, wrote %q", err, out)
	}
	want := "POST /a/b?x=1 HTTP/1.1\r\n" +
		"Host: 127.0.0.1:7100\r\n" +
		"User-Agent: test\r\n" +
		"Transfer-Encoding: chunked\r\n" +
		"Connection: close\r\n\r\n"
	if req.kind != proxyHTTPForward || req.target != "127.0.0.1:7100" || string(req.up) != want {
		t.Fatalf("got target %q head\n%q\nwant\n%q", req.target, req.up, want)
	}
}

func TestHTTPProxyDefaultPortAndPath(t *testing.T) {
	req, _, err := httpRead("GET http://[::1] HTTP/1.0\r\n\r\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if req.target != "[::1]:80" || !strings.HasPrefix(string(req.up), "GET / HTTP/1.0\r\nHost: [::1]\r\n") {
		t.Fatalf("got %q %q", req.target, req.up)
	}
	// An empty port is the default one (RFC 3986, 3.2.3).
	req, _, err = httpRead("GET http://h.example:/p HTTP/1.1\r\n\r\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if req.target != "h.example:80" || !strings.HasPrefix(string(req.up), "GET /p HTTP/1.1\r\nHost: h.example\r\n") {
		t.Fatalf("got %q %q", req.target, req.up)
	}
	req, _, err = httpRead("GET http://h.example?q#frag HTTP/1.1\r\n\r\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if req.target != "h.example:80" || !strings.HasPrefix(string(req.up), "GET /?q HTTP/1.1\r\n") {
		t.Fatalf("got %q %q", req.target, req.up)
	}
}

func TestHTTPProxyRejects(t *testing.T) {
	creds := newCredentials("u", "p")
	long := strings.Repeat("a", maxProxyHead)
	many := strings.Repeat("X-A: 1\r\n", maxProxyHeaderLines+1)
	tests := []struct {
		name   string
		input  string
		creds  *credentials
		status int
		err    error
	}{
		{"origin form", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", nil, 400, ErrProxyRequest},
		{"https url", "GET https://a.example/ HTTP/1.1\r\n\r\n", nil, 400, ErrProxyRequest},
		{"user info", "GET http://u:p@a.example/ HTTP/1.1\r\n\r\n", nil, 400, ErrProxyRequest},
		{"connect without port", "CONNECT a.example HTTP/1.1\r\n\r\n", nil, 400, ErrBadAddress},
		{"bad host", "GET http://a_b!/ HTTP/1.1\r\n\r\n", nil, 400, ErrBadAddress},
		{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", nil, 505, ErrProxyRequest},
		{"two spaces", "GET  http://a/ HTTP/1.1\r\n\r\n", nil, 400, ErrProxyRequest},
		{"obs fold", "GET http://a/ HTTP/1.1\r\nX-A: 1\r\n continued\r\n\r\n", nil, 400, ErrProxyRequest},
		{"space before colon", "GET http://a/ HTTP/1.1\r\nX-A : 1\r\n\r\n", nil, 400, ErrProxyRequest},
		{"control char", "GET http://a/ HTTP/1.1\r\nX-A: 1\x002\r\n\r\n", nil, 400, ErrProxyRequest},
		{"smuggling", "POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", nil, 400, ErrProxyRequest},
		{"head too large", "GET http://a/" + long + " HTTP/1.1\r\n\r\n", nil, 431, ErrProxyRequest},
		{"too many fields", "GET http://a/ HTTP/1.1\r\n" + many + "\r\n", nil, 431, ErrProxyRequest},
		{"no credentials", "CONNECT a.example:443 HTTP/1.1\r\n\r\n", creds, 407, ErrProxyAuth},
		{"wrong credentials", "CONNECT a.example:443 HTTP/1.1\r\nProxy-Authorization: " + basic("u", "q") + "\r\n\r\n", creds, 407, ErrProxyAuth},
		{"not basic", "CONNECT a.example:443 HTTP/1.1\r\nProxy-Authorization: Bearer x\r\n\r\n", creds, 407, ErrProxyAuth},
		{"truncated", "GET http://a/ HTTP/1.1\r\nX-A: 1", nil, 0, errTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, out, err := httpRead(tt.input, tt.creds)
			if !isErr(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if tt.status == 0 {
				if out != "" {
					t.Fatalf("answered a truncated request: %q", out)
				}
				return
			}
			resp, rerr := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
			if rerr != nil {
				t.Fatalf("answer %q: %v", out, rerr)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 407 && !strings.HasPrefix(resp.Header.Get("Proxy-Authenticate"), "Basic ") {
				t.Fatalf("407 without a Basic challenge: %q", out)
			}
		})
	}
}

func TestHTTPProxyAcceptsCredentials(t *testing.T) {
	creds := newCredentials("u", "p:with:colons")
	_, _, err := httpRead("CONNECT a.example:443 HTTP/1.1\r\nproxy-authorization: basic "+
		base64.StdEncoding.EncodeToString([]byte("u:p:with:colons"))+"\r\n\r\n", creds)
	if err != nil {
		t.Fatal(err)
	}
}

func TestRouteFailureStatus(t *testing.T) {
	if got := httpStatusFor(errDial{errors.New("refused")}); got != http.StatusBadGateway {
		t.Fatalf("got %d", got)
	}
	if got := httpStatusFor(errDial{ErrPolicyDenied}); got != http.StatusForbidden {
		t.Fatalf("got %d", got)
	}
}

// FuzzHTTPProxy feeds arbitrary bytes to the HTTP proxy reader: it must
// end without panic; what it accepts names a canonical address, and the
// head it passes on parses as one HTTP request with Connection: close.
func FuzzHTTPProxy(f *testing.F) {
	f.Add("GET http://a.example:8080/x HTTP/1.1\r\nHost: a\r\nConnection: x\r\nX: y\r\n\r\n")
	f.Add("CONNECT 127.0.0.1:443 HTTP/1.1\r\nProxy-Authorization: " + basic("u", "p") + "\r\n\r\n")
	f.Add("POST http://[::1]/?q HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
	creds := newCredentials("u", "p")
	f.Fuzz(func(t *testing.T, input string) {
		for _, c := range []*credentials{nil, creds} {
			req, _, err := httpRead(input, c)
			if err != nil {
				continue
			}
			if canon, perr := ParseAddr(req.target); perr != nil || canon != req.target {
				t.Fatalf("accepted target %q is not canonical (%v)", req.target, perr)
			}
			if req.kind != proxyHTTPForward {
				continue
			}
			r, perr := http.ReadRequest(bufio.NewReader(bytes.NewReader(req.up)))
			if perr != nil {
				t.Fatalf("passed-on head does not parse: %v\n%q", perr, req.up)
			}
			if !r.Close || r.Header.Get("Proxy-Authorization") != "" {
				t.Fatalf("passed-on head keeps the connection or the credentials: %q", req.up)
			}
		}
	})
}
