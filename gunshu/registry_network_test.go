package gunshu_test

import (
	"testing"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

func TestNetworkOf(t *testing.T) {
	for group, want := range map[string]string{
		"198.51.100.7/32":     "198.51.100.0/24",
		"2001:db8:1:2::/64":   "2001:db8:1::/48",
		"10.0.0.0/8":          "10.0.0.0/8",
		"127.0.0.1":           "",
		"relay.example.net:1": "",
	} {
		got, ok := gunshu.NetworkOf(group)
		if got != want || ok != (want != "") {
			t.Errorf("NetworkOf(%q) = %q, %v; want %q", group, got, ok, want)
		}
	}
}
