package gunshu

import (
	"errors"
	"testing"
)

// TestHTTPProxyContentLength: the entrance passes a request body on only
// when its length is one plain number, so the responder cannot frame it
// differently (request smuggling). Found by FuzzHTTPProxy: an empty
// Content-Length was passed on.
func TestHTTPProxyContentLength(t *testing.T) {
	for _, tc := range []struct {
		length string
		ok     bool
	}{
		{"Content-Length: 2\r\n", true},
		{"Content-Length: 0\r\n", true},
		{"Content-Length: 2\r\nContent-Length: 2\r\n", true},
		{"Content-Length:\r\n", false},
		{"Content-Length: \r\n", false},
		{"Content-Length: -2\r\n", false},
		{"Content-Length: +2\r\n", false},
		{"Content-Length: 0x2\r\n", false},
		{"Content-Length: 2, 2\r\n", false},
		{"Content-Length: 2 2\r\n", false},
		{"Content-Length: 2\r\nContent-Length: 3\r\n", false},
		{"Content-Length: 99999999999999999999\r\n", false},
	} {
		req, _, err := httpRead("POST http://a.example/ HTTP/1.1\r\n"+tc.length+"\r\nhi", nil)
		if tc.ok && (err != nil || req == nil) {
			t.Errorf("%q refused: %v", tc.length, err)
		}
		if !tc.ok && !errors.Is(err, ErrProxyRequest) {
			t.Errorf("%q: %v, want ErrProxyRequest", tc.length, err)
		}
	}
}
