package security

import (
	"context"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/attacks"
)

// examplePorts are the ports Caddyfile.example uses.
var examplePorts = []string{"7000", "7001", "7002", "7003", "7100", "8000", "8080", "8081", "1080"}

// example is Caddyfile.example as shipped, with free ports instead of its
// fixed ones, the admin endpoint off, and edit applied to the text.
type example struct {
	caddyfile string
	ports     map[string]string
}

func newExample(t *testing.T, edit func(string) string) *example {
	t.Helper()
	src, err := os.ReadFile("../../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	if edit != nil {
		text = edit(text)
	}
	e := &example{ports: map[string]string{}}
	for _, p := range examplePorts {
		e.ports[p] = freePort(t)
		text = strings.ReplaceAll(text, "127.0.0.1:"+p, e.addr(p))
	}
	// The global options block is the first line that is only "{".
	e.caddyfile = strings.Replace(text, "\n{\n", "\n{\n\tadmin off\n", 1)
	if e.caddyfile == text {
		t.Fatal("Caddyfile.example has no global options block")
	}
	return e
}

// addr is where the example's 127.0.0.1:<port> listens now.
func (e *example) addr(port string) string { return "127.0.0.1:" + e.ports[port] }

// listeners are the addresses to wait for.
func (e *example) listeners() []string {
	var out []string
	for _, p := range examplePorts {
		out = append(out, e.addr(p))
	}
	return out
}

// waitListed waits until manager lists every address of want.
func waitListed(t *testing.T, manager string, want ...string) {
	t.Helper()
	var list []string
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		list, err = gunshu.FetchList(context.Background(), manager, 2*time.Second, gunshu.MessageLimits{})
		if err == nil && containsAll(list, want) {
			return
		}
	}
	t.Fatalf("manager %s lists %v (%v), want %v", manager, list, err, want)
}

// waitThrough waits until a request through entrance gets want: an
// entrance asked before the relays registered answers from its cached
// empty list for a few seconds.
func waitThrough(t *testing.T, entrance, host, path, want string) {
	t.Helper()
	var body string
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if body, err = attacks.Through(entrance, host, path); err == nil && body == want {
			return
		}
	}
	t.Fatalf("through %s: %q (%v), want %q", entrance, body, err, want)
}

func containsAll(list, want []string) bool {
	for _, w := range want {
		if !slices.Contains(list, w) {
			return false
		}
	}
	return true
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}
