package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

var update = flag.Bool("update", false, "rewrite the golden files of the adapt tests")

func adapt(t *testing.T, text, filename string) ([]byte, error) {
	t.Helper()
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(text), map[string]any{"filename": filename})
	if err == nil && len(warnings) > 0 {
		t.Fatalf("adapting %s: warnings %v", filename, warnings)
	}
	return out, err
}

// TestAdaptGolden adapts every testdata/adapt/*.caddyfile and compares
// the JSON with the .json beside it (go test -run AdaptGolden -update
// rewrites them).
func TestAdaptGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/adapt/*.caddyfile")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range files {
		t.Run(filepath.Base(in), func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := adapt(t, string(src), filepath.Base(in))
			if err != nil {
				t.Fatalf("adapting: %v", err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, out, "", "\t"); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			golden := strings.TrimSuffix(in, ".caddyfile") + ".json"
			if *update {
				if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Fatalf("adapted JSON differs from %s:\n%s", golden, pretty.Bytes())
			}
		})
	}
}

// TestExampleJSONMatchesCaddyfile keeps examples/network.json the
// adaptation of Caddyfile.example.
func TestExampleJSONMatchesCaddyfile(t *testing.T) {
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	out, err := adapt(t, string(src), "Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../examples/network.json")
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &b); err != nil {
		t.Fatal(err)
	}
	aj, _ := json.Marshal(a)
	bj, _ := json.Marshal(b)
	if !bytes.Equal(aj, bj) {
		t.Fatalf("examples/network.json is not the adaptation of Caddyfile.example; regenerate it with\n\tcaddy adapt --config Caddyfile.example --pretty > examples/network.json")
	}
}

// TestAdaptErrors checks that a bad Caddyfile is refused with an error
// that names the file, the line and the offending token.
func TestAdaptErrors(t *testing.T) {
	cases := []struct {
		name, body string
		want       string
	}{
		{"relay unknown option", "gunshu_relay {\n\tbogus 1\n}", `Caddyfile:6 - unknown gunshu_relay option "bogus"`},
		{"relay argument", "gunshu_relay 127.0.0.1:7000", `Caddyfile:5 - gunshu_relay takes no arguments, got "127.0.0.1:7000"`},
		{"relay bad duration", "gunshu_relay {\n\tdial_timeout soon\n}", `Caddyfile:6 - dial_timeout: bad duration "soon"`},
		{"relay bad count", "gunshu_relay {\n\tmax_list -3\n}", `Caddyfile:6 - max_list: want a non-negative integer, got "-3"`},
		{"relay duplicate", "gunshu_relay {\n\tadvertise 192.0.2.1:7001\n\tadvertise 192.0.2.1:7002\n}", `Caddyfile:7 - duplicate option "advertise"`},
		{"relay extra arg", "gunshu_relay {\n\tadvertise 192.0.2.1:7001 192.0.2.1:7002\n}", `Caddyfile:6 - advertise takes one argument, got extra "192.0.2.1:7002"`},
		{"relay missing arg", "gunshu_relay {\n\tmanagers\n}", `Caddyfile:6 - managers needs at least one argument`},
		{"manager extra arg", "gunshu_manager a b", `Caddyfile:5 - gunshu_manager takes at most one argument (the manager's name), got extra "b"`},
		{"manager block", "gunshu_manager {\n\tpatrol_interval 1s\n}", `Caddyfile:6 - gunshu_manager takes no block, got "patrol_interval"`},
		{"responder unknown option", "gunshu_responder {\n\tlog_adresses\n}", `Caddyfile:6 - unknown gunshu_responder option "log_adresses"`},
		{"initiator unknown option", "gunshu_initiator {\n\tmax_relay 3\n}", `Caddyfile:6 - unknown gunshu_initiator option "max_relay"`},
		{"initiator responder twice", "gunshu_initiator 192.0.2.1:7100 {\n\tresponder 192.0.2.1:7101\n}", `Caddyfile:6 - duplicate option "responder"`},
		{"log_addresses argument", "gunshu_initiator {\n\tlog_addresses yes\n}", `Caddyfile:6 - log_addresses takes no arguments, got "yes"`},
		{"relay bad port", "gunshu_relay {\n\tdeny_ports 25 smtp\n}", `Caddyfile:6 - deny_ports: want a port number from 1 to 65535 (or none alone), got "smtp"`},
		{"relay port zero", "gunshu_relay {\n\tdeny_ports 0\n}", `Caddyfile:6 - deny_ports: want a port number from 1 to 65535 (or none alone), got "0"`},
		{"relay none and ports", "gunshu_relay {\n\tdeny_ports none 25\n}", `Caddyfile:6 - deny_ports: want a port number from 1 to 65535 (or none alone), got "none"`},
		{"relay sessions", "gunshu_relay {\n\tmax_sessions_per_ip -1\n}", `Caddyfile:6 - max_sessions_per_ip: want a non-negative integer, got "-1"`},
		{"responder sessions", "gunshu_responder {\n\tmax_sessions many\n}", `Caddyfile:6 - max_sessions: want a non-negative integer, got "many"`},
		{"initiator route_continue", "gunshu_initiator {\n\troute_continue 1\n}", `Caddyfile:6 - route_continue 1: must be at least 0 and below 1`},
		{"initiator route_continue word", "gunshu_initiator {\n\troute_continue half\n}", `Caddyfile:6 - route_continue: want a probability at least 0 and below 1, got "half"`},
		{"initiator route_continue NaN", "gunshu_initiator {\n\troute_continue NaN\n}", `Caddyfile:6 - route_continue NaN: must be at least 0 and below 1`},
		{"initiator max_relays", "gunshu_initiator {\n\tmax_relays -2\n}", `Caddyfile:6 - max_relays: want a count, or -1 for the whole list, got "-2"`},
		{"initiator guards", "gunshu_initiator {\n\tguards some\n}", `Caddyfile:6 - guards: want a non-negative integer, got "some"`},
		{"initiator guard_lifetime", "gunshu_initiator {\n\tguard_lifetime forever\n}", `Caddyfile:6 - guard_lifetime: bad duration "forever"`},
		{"initiator list_stale_limit", "gunshu_initiator {\n\tlist_stale_limit never\n}", `Caddyfile:6 - list_stale_limit: want a positive duration or off, got "never"`},
		{"initiator password twice", "gunshu_initiator {\n\tpassword a\n\tpassword b\n}", `Caddyfile:7 - duplicate option "password"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := relayRoute(c.body)
			_, err := adapt(t, text, "Caddyfile")
			checkParseError(t, text, err, c.want)
		})
	}
}

// checkParseError wants err to carry the message and the position of
// want, written "Caddyfile:<line> - <message>" (or only a message).
func checkParseError(t *testing.T, text string, err error, want string) {
	t.Helper()
	msg, pos := want, ""
	if i := strings.Index(want, " - "); i >= 0 && strings.HasPrefix(want, "Caddyfile:") {
		msg, pos = want[i+3:], ", at "+want[:i]
	}
	if err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error()+"\n", pos+"\n") && !strings.Contains(err.Error(), pos+" ") {
		t.Fatalf("adapting\n%s\nerror %v\nwant %q%s", text, err, msg, pos)
	}
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// TestAdaptGlobalOptionErrors covers the gunshu global option and the
// matcher.
func TestAdaptGlobalOptionErrors(t *testing.T) {
	cases := []struct {
		name, text, want string
	}{
		{"unknown option", "{\n\tgunshu {\n\t\tmanagers\n\t}\n}\n", `Caddyfile:3 - unknown gunshu option "managers" (want manager)`},
		{"manager twice", "{\n\tgunshu {\n\t\tmanager a\n\t\tmanager a\n\t}\n}\n", `Caddyfile:4 - manager "a" defined twice`},
		{"manager option", "{\n\tgunshu {\n\t\tmanager {\n\t\t\tpatrol 1s\n\t\t}\n\t}\n}\n", `Caddyfile:4 - unknown manager option "patrol"`},
		{"verify value", "{\n\tgunshu {\n\t\tmanager {\n\t\t\tverify maybe\n\t\t}\n\t}\n}\n", `Caddyfile:4 - verify: want on or off, got "maybe"`},
		{"registry option", "{\n\tgunshu {\n\t\tmanager {\n\t\t\tregistry memory {\n\t\t\t\tmax_per_host 2\n\t\t\t}\n\t\t}\n\t}\n}\n", `Caddyfile:5 - unknown memory registry option "max_per_host": its caps are the manager's max_services, max_per_ip and max_per_network`},
		{"register_rate no args", "{\n\tgunshu {\n\t\tmanager {\n\t\t\tregister_rate\n\t\t}\n\t}\n}\n", `Caddyfile:4 - register_rate wants <every> [<burst>] or off, got 0 arguments`},
		{"register_rate every", "{\n\tgunshu {\n\t\tmanager {\n\t\t\tregister_rate 0s\n\t\t}\n\t}\n}\n", `Caddyfile:4 - register_rate: want a positive duration, got "0s"`},
		{"register_rate burst", "{\n\tgunshu {\n\t\tmanager {\n\t\t\tregister_rate 1m 0\n\t\t}\n\t}\n}\n", `Caddyfile:4 - register_rate: burst: want a positive integer, got "0"`},
		{"max_per_ip", "{\n\tgunshu {\n\t\tmanager {\n\t\t\tmax_per_ip -1\n\t\t}\n\t}\n}\n", `Caddyfile:4 - max_per_ip: want a non-negative integer, got "-1"`},
		{"require_source_match", "{\n\tgunshu {\n\t\tmanager {\n\t\t\trequire_source_match yes\n\t\t}\n\t}\n}\n", `Caddyfile:4 - require_source_match: want on or off, got "yes"`},
		{"registry unknown", "{\n\tgunshu {\n\t\tmanager {\n\t\t\tregistry etcd\n\t\t}\n\t}\n}\n", `gunshu.registries.etcd`},
		{"matcher command", "{\n\tlayer4 {\n\t\t:9000 {\n\t\t\t@g gunshu est forward\n\t\t\troute @g {\n\t\t\t\tgunshu_relay\n\t\t\t}\n\t\t}\n\t}\n}\n", `Caddyfile:4 - gunshu matcher: unknown command "forward"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := adapt(t, c.text, "Caddyfile")
			checkParseError(t, c.text, err, c.want)
		})
	}
}

// TestValidateErrors provisions configs that adapt but are wrong, and
// checks the messages.
func TestValidateErrors(t *testing.T) {
	cases := []struct {
		name, text, want string
	}{
		{"relay without advertise", relayRoute("gunshu_relay {\n\tmanagers 192.0.2.1:7000\n}"), "advertise is required with managers"},
		{"relay bad manager", relayRoute("gunshu_relay {\n\tmanagers 192.0.2.1\n\tadvertise 192.0.2.2:7001\n}"), "managers[0]: malformed address"},
		{"relay unset env", relayRoute("gunshu_relay {\n\tmanagers 192.0.2.1:7000\n\tadvertise {env.GUNSHU_TEST_UNSET_VARIABLE}\n}"), "advertise: "},
		{"relay bad cidr", relayRoute("gunshu_relay {\n\tallow 10.0.0.0/33\n}"), `allow: bad CIDR "10.0.0.0/33"`},
		{"relay interval without managers", relayRoute("gunshu_relay {\n\tregister_interval 1m\n}"), "register_interval is set but there are no managers"},
		{"initiator without manager", relayRoute("gunshu_initiator 192.0.2.1:7100"), "manager is required"},
		{"initiator bad responder", relayRoute("gunshu_initiator 192.0.2.1 {\n\tmanager 192.0.2.1:7000\n}"), "responder: malformed address"},
		{"initiator credentials with responder", relayRoute("gunshu_initiator 192.0.2.1:7100 {\n\tmanager 192.0.2.1:7000\n\tusername alice\n\tpassword s3cret\n}"), "username and password need proxy mode"},
		{"initiator unset password", relayRoute("gunshu_initiator {\n\tmanager 192.0.2.1:7000\n\tusername alice\n\tpassword {env.GUNSHU_TEST_UNSET_VARIABLE}\n}"), "password: "},
		{"initiator guard_lifetime without guards", relayRoute("gunshu_initiator {\n\tmanager 192.0.2.1:7000\n\tguards 0\n\tguard_lifetime 1h\n}"), "guard_lifetime is set but guards is 0"},
		{"initiator bad cover", relayRoute("gunshu_initiator {\n\tmanager 192.0.2.1:7000\n\tcover relay\n}"), "cover: malformed address"},
		{"unknown manager", relayRoute("gunshu_manager nosuch"), `no manager named "nosuch" in the gunshu app (configured: default)`},
		{"manager bad deny", "{\n\tgunshu {\n\t\tmanager {\n\t\t\tdeny not_a_host!\n\t\t}\n\t}\n}\n", `manager "default": deny: bad host name or address "not_a_host!"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := adapt(t, c.text, "Caddyfile")
			if err != nil {
				t.Fatalf("adapting: %v", err)
			}
			var cfg caddy.Config
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatal(err)
			}
			err = caddy.Validate(&cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("validating\n%s\nerror %v\nwant it to contain %q", c.text, err, c.want)
			}
		})
	}
}

func relayRoute(handler string) string {
	return "{\n\tlayer4 {\n\t\t127.0.0.1:9000 {\n\t\t\troute {\n" + indent(handler, "\t\t\t\t") + "\n\t\t\t}\n\t\t}\n\t}\n}\n"
}
