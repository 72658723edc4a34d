package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/internal/attacks"
	"github.com/gunshu/caddy-gunshu/internal/caddyproc"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// newExample is Caddyfile.example as shipped, edit applied, on free
// ports and with the admin endpoint off. It reads the file from the
// repository root, one level up.
func newExample(t *testing.T, edit func(string) string) *attacks.Example {
	t.Helper()
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	if edit != nil {
		text = edit(text)
	}
	e, err := attacks.NewExample(text, func() string { return port(t) })
	if err != nil {
		t.Fatal(err)
	}
	return e
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

// port is a free port on 127.0.0.1, as a string.
func port(t *testing.T) string { return testkit.FreePort(t) }

// addrOn is an address of the loopback address ip with a FreePort.
func addrOn(t *testing.T, ip string) string { return ip + ":" + testkit.FreePort(t) }

// waitLines waits until p has logged at least n lines holding every one
// of want, within 15 s, and returns how many it found by then.
func waitLines(t *testing.T, p *caddyproc.Process, n int, want ...string) int {
	t.Helper()
	from, found := 0, 0
	for found < n {
		i, err := p.WaitLog(from, want[0], 15*time.Second, want[1:]...)
		if err != nil {
			return found
		}
		from, found = i+1, found+1
	}
	return found
}

// logOf is everything p wrote so far.
func logOf(p *caddyproc.Process) string { return strings.Join(p.Lines(0), "\n") }
