package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/redistest"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// threeManagersCaddyfile is three managers on one Redis, each on its own
// listener, two relays registering at A and at C, a responder in front of
// an echo server, and an entrance whose initiator asks manager B.
const threeManagersCaddyfile = `{
	gunshu {
		manager a {
			allow 127.0.0.0/8
			registry redis {redis} {
				key_prefix three:
				snapshot_interval 100ms
			}
		}
		manager b {
			allow 127.0.0.0/8
			registry redis {redis} {
				key_prefix three:
				snapshot_interval 100ms
			}
		}
		manager c {
			allow 127.0.0.0/8
			registry redis {redis} {
				key_prefix three:
				snapshot_interval 100ms
			}
		}
	}
	layer4 {
		{A} {
			route {
				gunshu_manager a
			}
		}
		{B} {
			route {
				gunshu_manager b
			}
		}
		{C} {
			route {
				gunshu_manager c
			}
		}
		{R1} {
			route {
				gunshu_relay {
					managers {A}
					advertise {R1}
					allow 127.0.0.0/8
				}
			}
		}
		{R2} {
			route {
				gunshu_relay {
					managers {C}
					advertise {R2}
					allow 127.0.0.0/8
				}
			}
		}
		{RESP} {
			route {
				gunshu_responder
				proxy {ECHO}
			}
		}
		{ENT} {
			route {
				gunshu_initiator {RESP} {
					manager {B}
				}
			}
		}
	}
}`

func TestThreeCaddyManagersOnOneRedis(t *testing.T) {
	srv := redistest.Start(t)
	addrs := map[string]string{"{redis}": srv.Addr, "{ECHO}": testkit.EchoServer(t)}
	for _, name := range []string{"A", "B", "C", "R1", "R2", "RESP", "ENT"} {
		addrs["{"+name+"}"] = testkit.FreePort(t)
	}
	text := threeManagersCaddyfile
	for placeholder, addr := range addrs {
		if !strings.Contains(addr, ":") {
			addr = "127.0.0.1:" + addr
			addrs[placeholder] = addr
		}
		text = strings.ReplaceAll(text, placeholder, addr)
	}
	cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(caddyfile.Format([]byte(text)), map[string]any{"filename": "Caddyfile"})
	if err != nil || len(warnings) > 0 {
		t.Fatalf("adapting: %v %v", err, warnings)
	}
	var cfg map[string]any
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["admin"] = map[string]any{"disabled": true, "config": map[string]any{"persist": false}}
	cfgJSON, _ = json.Marshal(cfg)
	runConfig(t, cfgJSON)

	relays := []string{addrs["{R1}"], addrs["{R2}"]}
	slices.Sort(relays)
	for _, m := range []string{"{A}", "{B}", "{C}"} {
		var got []string
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err = gunshu.FetchList(context.Background(), addrs[m], 2*time.Second, gunshu.MessageLimits{})
			slices.Sort(got)
			if err == nil && slices.Equal(got, relays) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("manager %s lists %v (%v), want the relays registered at A and C: %v", m, got, err, relays)
			}
			time.Sleep(25 * time.Millisecond)
		}
	}

	for i := range 5 {
		msg := fmt.Sprintf("through manager B, %d", i)
		c, err := net.DialTimeout("tcp", addrs["{ENT}"], 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != msg {
			t.Fatalf("echo through the entrance: %q, %v; want %q", got, err, msg)
		}
	}
}
