package e2e

import (
	"testing"
	"time"

	"github.com/gunshu/caddy-gunshu/internal/attacks"
	"github.com/gunshu/caddy-gunshu/internal/caddyproc"
)

// TestRouteLoop (#16.3): one attacker connection whose list names the
// relay under other spellings of its address, ending at a tarpit that
// never answers, made it hold two sockets per pass through itself. Under
// the defaults a list longer than 20 hops is refused outright; a list of
// loopback addresses the relay cannot know are its own makes it dial
// itself at most once, recognise its own connection and refuse (or, if it
// picks the tarpit first, hold the one route to it); from then on, and for
// names and unspecified addresses at once, such lists are refused before
// any dial.
func TestRouteLoop(t *testing.T) {
	relayPort := port(t)
	p := caddyproc.Start(t, caddyproc.Config{Name: "loop", Caddyfile: attacks.LoopRelay(relayPort, 128)})
	tarpit, err := attacks.Tarpit("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tarpit.Close()
	relay := "127.0.0.1:" + relayPort
	for _, c := range []struct {
		name    string
		list    []string
		maxPeak int
	}{
		{"127 spellings", attacks.Spellings(relayPort, 127, true, tarpit.Addrs[0]), 1},
		{"19 loopback spellings", attacks.Spellings(relayPort, 19, false, tarpit.Addrs[0]), 3},
		{"19 loopback spellings again", attacks.Spellings(relayPort, 19, false, tarpit.Addrs[0]), 3},
		{"localhost, 0.0.0.0 and 17 more", attacks.Spellings(relayPort, 19, true, tarpit.Addrs[0]), 1},
	} {
		peak, answer, err := attacks.Loop(relay, c.list, func() (int, error) { return attacks.SocketsOf(p.PID()) }, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: the relay held up to %d sockets for one attacker connection, and answered %q", c.name, peak, answer)
		// No answer: the relay picked the tarpit first (1 in 20) and
		// holds that one route.
		if peak > c.maxPeak || answer != "fail\n" && !(answer == "" && peak <= 3) {
			t.Errorf("%s: the relay held up to %d sockets (want at most %d) and answered %q (want fail)", c.name, peak, c.maxPeak, answer)
		}
	}
}
