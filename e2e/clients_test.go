package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
)

// The clients people use, curl and Chromium, through entrances of an
// in-process Gunshu network.

func TestEntranceWithCurl(t *testing.T) {
	n := testnet.New(t, 4)
	responder := testnet.PageResponder(t)
	open := n.ServeEntrance(t, &gunshu.Entrance{})
	locked := n.ServeEntrance(t, &gunshu.Entrance{Username: "bob", Password: "pw"})
	url := "http://" + responder + "/curl"
	want := "path /curl host " + responder + " body "
	tests := []struct {
		name string
		args []string
	}{
		{"socks5 hostname", []string{"--socks5-hostname", open, url}},
		{"socks5 local resolution", []string{"--socks5", open, url}},
		{"socks5 with credentials", []string{"--socks5-hostname", locked, "--proxy-user", "bob:pw", url}},
		{"http connect", []string{"--proxy", "http://" + open, "--proxytunnel", url}},
		{"http absolute form", []string{"--proxy", "http://" + open, url}},
		{"http with credentials", []string{"--proxy", "http://" + locked, "--proxy-user", "bob:pw", url}},
		{"connect with credentials", []string{"--proxy", "http://" + locked, "--proxy-user", "bob:pw", "--proxytunnel", url}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := testkit.Curl(t, tt.args...)
			if err != nil || out != want {
				t.Fatalf("curl %v: %v\n%s", tt.args, err, out)
			}
		})
	}
	if out, err := testkit.Curl(t, "-o", "/dev/null", "-w", "%{http_code}", "--proxy", "http://"+locked, "--proxy-user", "bob:no", url); out != "407" {
		t.Errorf("wrong password over HTTP: %q %v, want 407", out, err)
	}
	if out, err := testkit.Curl(t, "--socks5-hostname", locked, "--proxy-user", "bob:no", url); err == nil {
		t.Errorf("wrong password over SOCKS5 succeeded: %q", out)
	}
}

func TestEntranceWithChromium(t *testing.T) {
	n := testnet.New(t, 3)
	responder := testnet.PageResponder(t)
	entrance := n.ServeEntrance(t, &gunshu.Entrance{})
	shot, err := filepath.Abs("../artifacts/entrance-socks5-chromium.png")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(shot), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Remove(shot)
	out := testkit.Chromium(t, "--proxy-server=socks5://"+entrance, "--window-size=800,600",
		"--screenshot="+shot, "--dump-dom", "http://"+responder+"/")
	if !strings.Contains(out, testnet.Message) {
		t.Fatalf("DOM lacks the responder's text:\n%s", out)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
		t.Fatalf("no screenshot at %s: %v", shot, err)
	}
}

// TestEntranceAnswersRouteFailureToCurl: a route that cannot reach its
// responder is a 502 to an HTTP CONNECT client.
func TestEntranceAnswersRouteFailureToCurl(t *testing.T) {
	n := testnet.New(t, 2)
	dead := testkit.ClosedAddr(t) // nothing listens here: the last relay cannot connect
	entrance := n.ServeEntrance(t, &gunshu.Entrance{Dialer: &gunshu.Dialer{Manager: n.ManagerAddr, Attempts: 1}})
	out, err := testkit.Curl(t, "--proxy", "http://"+entrance, "--proxytunnel", "http://"+dead+"/")
	if !strings.Contains(out, "CONNECT tunnel failed, response 502") {
		t.Errorf("CONNECT to a dead responder: %q %v, want 502", out, err)
	}
}
