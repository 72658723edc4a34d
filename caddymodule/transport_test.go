package caddymodule

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

func TestTransportCaddyfile(t *testing.T) {
	input := `:8080 {
		reverse_proxy https://responder.example:443 {
			transport gunshu {
				manager 127.0.0.1:7000
				max_relays 3
				attempts 2
				dial_timeout 4s
				tls_server_name responder.example
				keepalive off
			}
		}
	}`
	adapter := caddyconfig.GetAdapter("caddyfile")
	out, warnings, err := adapter.Adapt([]byte(input), nil)
	if err != nil {
		t.Fatalf("adapting: %v (%v)", err, warnings)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []struct {
							Handler   string          `json:"handler"`
							Transport json.RawMessage `json:"transport"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	raw := cfg.Apps.HTTP.Servers["srv0"].Routes[0].Handle[0].Transport
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("transport %s: %v", raw, err)
	}
	want := map[string]any{
		"protocol":     "gunshu",
		"manager":      "127.0.0.1:7000",
		"max_relays":   float64(3),
		"attempts":     float64(2),
		"dial_timeout": float64(4 * time.Second),
		"tls":          map[string]any{"server_name": "responder.example"},
		"keep_alive":   map[string]any{"enabled": false},
	}
	for k, v := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %v, want %v (transport %s)", k, got[k], v, raw)
		}
	}
}

func TestTransportCaddyfileErrors(t *testing.T) {
	for _, block := range []string{
		"max_relays many",
		"attempts",
		"manager a b",
		"no_such_option 1",
		"manager 127.0.0.1:7001",
	} {
		input := ":8080 {\n reverse_proxy 127.0.0.1:9 {\n transport gunshu {\n manager 127.0.0.1:7000\n " + block + "\n }\n }\n}"
		if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil); err == nil {
			t.Errorf("%q: adapted without error", block)
		}
	}
}

func TestTransportRefusesOptionsThatBypassTheRoute(t *testing.T) {
	tests := []struct {
		name string
		tr   Transport
		want string
	}{
		{"no manager", Transport{}, "manager address is required"},
		{"bad manager", Transport{RouteConfig: RouteConfig{Manager: "nowhere"}}, "malformed address"},
		{"http3", Transport{RouteConfig: RouteConfig{Manager: "127.0.0.1:7000"}, HTTPTransport: reverseproxy.HTTPTransport{Versions: []string{"3"}}}, "versions 3"},
		{"proxy protocol", Transport{RouteConfig: RouteConfig{Manager: "127.0.0.1:7000"}, HTTPTransport: reverseproxy.HTTPTransport{ProxyProtocol: "v2"}}, "proxy_protocol"},
		{"forward proxy", Transport{RouteConfig: RouteConfig{Manager: "127.0.0.1:7000"}, HTTPTransport: reverseproxy.HTTPTransport{ForwardProxyURL: "http://p:1"}}, "network_proxy"},
		{"local address", Transport{RouteConfig: RouteConfig{Manager: "127.0.0.1:7000"}, HTTPTransport: reverseproxy.HTTPTransport{LocalAddress: "127.0.0.2"}}, "local_address"},
		{"sni placeholder", Transport{RouteConfig: RouteConfig{Manager: "127.0.0.1:7000"}, HTTPTransport: reverseproxy.HTTPTransport{TLS: &reverseproxy.TLSConfig{ServerName: "{http.request.host}"}}}, "tls_server_name"},
	}
	for _, tt := range tests {
		err := tt.tr.validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one naming %q", tt.name, err, tt.want)
		}
	}
}

// writeTestCert writes a self-signed certificate for responder.test and
// its key as PEM files, and returns their paths.
func writeTestCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "responder.test"},
		DNSNames:              []string{"responder.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "privkey.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestTransportEndToEndTLS runs one Caddy with two fronts that reverse
// proxy through the gunshu transport, and two responders on the gunshu
// listener wrapper: one terminates TLS after the route is set up, the
// other speaks plain HTTP. curl also reaches the TLS responder through a
// SOCKS5 proxy entrance. A tee in front of each responder records what
// the route's last relay forwards. Through TLS the secret request and
// answer must not appear in it; in the plain control they must, which
// shows the tee sees what the relays see.
func TestTransportEndToEndTLS(t *testing.T) {
	n := testnet.New(t, 3)
	certFile, keyFile := writeTestCert(t)
	tlsBack, plainBack := testkit.FreePort(t), testkit.FreePort(t)
	tlsFront, plainFront := testkit.FreePort(t), testkit.FreePort(t)
	tlsTee := newTeeProxy(t, "127.0.0.1:"+tlsBack)
	plainTee := newTeeProxy(t, "127.0.0.1:"+plainBack)

	responderRoutes := `[{"handle": [{"handler": "static_response", "body": "TOP-SECRET-ANSWER for {http.request.uri}"}]}]`
	front := func(port, upstream, tlsConfig string) string {
		return fmt.Sprintf(`{
			"listen": ["127.0.0.1:%s"],
			"automatic_https": {"disable": true},
			"routes": [{"handle": [{"handler": "reverse_proxy",
				"upstreams": [{"dial": %q}],
				"transport": {"protocol": "gunshu", "manager": %q %s}}]}]
		}`, port, upstream, n.ManagerAddr, tlsConfig)
	}
	storage := loadCaddy(t, fmt.Sprintf(`{
		"admin": {"listen": "{admin}"},
		"logging": {"logs": {"default": {"level": "ERROR"}}},
		"apps": {
			"tls": {"certificates": {"load_files": [{"certificate": %q, "key": %q}]}},
			"http": {"servers": {
				"tls_front": %s,
				"plain_front": %s,
				"tls_responder": {
					"listen": ["127.0.0.1:%s"],
					"listener_wrappers": [{"wrapper": "gunshu"}, {"wrapper": "tls"}],
					"tls_connection_policies": [{}],
					"automatic_https": {"disable": true},
					"routes": %s
				},
				"plain_responder": {
					"listen": ["127.0.0.1:%s"],
					"listener_wrappers": [{"wrapper": "gunshu"}],
					"automatic_https": {"disable": true},
					"routes": %s
				}
			}}
		}
	}`, certFile, keyFile,
		front(tlsFront, tlsTee.addr, fmt.Sprintf(`, "tls": {"server_name": "responder.test", "ca": {"provider": "file", "pem_files": [%q]}}`, certFile)),
		front(plainFront, plainTee.addr, ""),
		tlsBack, responderRoutes, plainBack, responderRoutes))

	client := &http.Client{Timeout: 20 * time.Second}
	get := func(port, path string) string {
		t.Helper()
		resp, err := client.Get("http://127.0.0.1:" + port + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if want := "TOP-SECRET-ANSWER for " + path; string(body) != want {
			t.Fatalf("got %d %q, want %q", resp.StatusCode, body, want)
		}
		return string(body)
	}
	get(tlsFront, "/secret-path-8ff2")
	get(plainFront, "/plain-path-51c0")
	// Both transports share one guard set in Caddy's storage: no gunshu
	// app here, so no cover.
	stored, err := os.ReadFile(filepath.Join(storage, filepath.FromSlash(gunshu.GuardKey(n.ManagerAddr, ""))))
	if err != nil || !slices.ContainsFunc(n.RelayAddrs(), func(r string) bool { return bytes.Contains(stored, []byte(r)) }) {
		t.Fatalf("the transports' guard set in Caddy's storage: %s (%v), want one of %v", stored, err, n.RelayAddrs())
	}
	// And with a real client.
	out, err := testkit.Curl(t, "http://127.0.0.1:"+tlsFront+"/secret-path-8ff2?curl")
	if want := "TOP-SECRET-ANSWER for /secret-path-8ff2?curl"; err != nil || out != want {
		t.Fatalf("curl: %v %q, want %q", err, out, want)
	}

	// A proxy entrance with curl speaking TLS through it to the same
	// responder: the route ends at the same tee.
	entrance := n.ServeEntrance(t, &gunshu.Entrance{Dialer: n.Dialer(1)})
	out, err = testkit.Curl(t, "--cacert", certFile, "--socks5-hostname", entrance,
		"--connect-to", "responder.test:443:"+tlsTee.addr,
		"https://responder.test/secret-path-8ff2?socks")
	if want := "TOP-SECRET-ANSWER for /secret-path-8ff2?socks"; err != nil || out != want {
		t.Fatalf("curl over SOCKS5 and TLS: %v %q, want %q", err, out, want)
	}

	tlsBytes, plainBytes := tlsTee.recorded(), plainTee.recorded()
	for _, rec := range [][]byte{tlsBytes, plainBytes} {
		if !bytes.HasPrefix(rec, []byte("est\n")) || !bytes.Contains(rec, []byte("forward\n")) {
			t.Fatalf("the tee did not see a Gunshu route: %.80q", rec)
		}
	}
	if !bytes.Contains(plainBytes, []byte("GET /plain-path-51c0")) || !bytes.Contains(plainBytes, []byte("TOP-SECRET-ANSWER")) {
		t.Fatalf("control: the plain route's request and answer are not in the tee's record")
	}
	// The tee records both directions: forward leaves with est, the
	// route's ok comes back, and only then does the client start TLS.
	afterForward := bytes.TrimPrefix(tlsBytes[bytes.Index(tlsBytes, []byte("forward\n"))+len("forward\n"):], []byte("ok\n"))
	if len(afterForward) < 5 || afterForward[0] != 0x16 || afterForward[1] != 0x03 {
		t.Fatalf("the TLS route does not start with a TLS handshake record: %.20q", afterForward)
	}
	for _, secret := range []string{"secret-path-8ff2", "TOP-SECRET-ANSWER"} {
		if bytes.Contains(tlsBytes, []byte(secret)) {
			t.Errorf("the relays saw %q in the clear", secret)
		}
	}
}
