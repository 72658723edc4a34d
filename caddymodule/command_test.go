package caddymodule

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// runGunshuCommand runs "caddy gunshu <args>" as Caddy's command line
// would, with stdin as input, and returns what it printed.
func runGunshuCommand(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := &cobra.Command{Use: "gunshu"}
	setupGunshuCommand(cmd)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestCommandList(t *testing.T) {
	n := newEntNet(t, 3)
	out, err := runGunshuCommand(t, "", "list", "--manager", n.manager)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "#") || !strings.Contains(lines[0], "RELAY ADDRESS") {
		t.Fatalf("table:\n%s", out)
	}
	var listed []string
	for _, l := range lines[1:4] {
		f := strings.Fields(l)
		if len(f) != 2 {
			t.Fatalf("row %q", l)
		}
		listed = append(listed, f[1])
	}
	want := append([]string(nil), n.relays...)
	sort.Strings(listed)
	sort.Strings(want)
	if strings.Join(listed, ",") != strings.Join(want, ",") {
		t.Fatalf("listed %v, want %v", listed, want)
	}
	if !strings.HasPrefix(lines[4], "3 relay(s) listed by "+n.manager) {
		t.Fatalf("footer %q", lines[4])
	}

	out, err = runGunshuCommand(t, "", "list", "--manager", n.manager, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Manager string   `json:"manager"`
		Relays  []string `json:"relays"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("JSON %q: %v", out, err)
	}
	sort.Strings(doc.Relays)
	if doc.Manager != n.manager || strings.Join(doc.Relays, ",") != strings.Join(want, ",") {
		t.Fatalf("JSON %+v", doc)
	}
}

func TestCommandErrors(t *testing.T) {
	ln := entListen(t)
	dead := ln.Addr().String()
	ln.Close()
	for _, args := range [][]string{
		{"list"},
		{"list", "--manager", "not an address"},
		{"list", "--manager", dead, "--timeout", "1s"},
		{"dial", "--manager", dead},
		{"dial", "--manager", dead, "--attempts", "1", "127.0.0.1:9"},
	} {
		if out, err := runGunshuCommand(t, "", args...); err == nil {
			t.Errorf("%v: no error (printed %q)", args, out)
		}
	}
}

func TestCommandDial(t *testing.T) {
	n := newEntNet(t, 3)
	// An upper-casing responder: it answers what it read, once input ends.
	ln := entListen(t)
	rl := (&gunshu.Responder{}).Listen(ln, 0)
	n.closers = append(n.closers, func() { rl.Close(); rl.Wait() })
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			c, err := rl.Accept()
			if err != nil {
				return
			}
			in, _ := io.ReadAll(c)
			c.Write(bytes.ToUpper(in))
			c.Close()
		}
	}()
	dataDir := t.TempDir()
	t.Setenv("XDG_DATA_HOME", dataDir)
	input := strings.Repeat("hello through the crowd\n", 1000)
	var guard []byte
	for run := range 3 {
		out, err := runGunshuCommand(t, input, "dial", "--manager", n.manager, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if out != strings.ToUpper(input) {
			t.Fatalf("got %d bytes, want %d", len(out), len(input))
		}
		// The guard is kept in Caddy's data directory, the same for
		// every run.
		stored, err := os.ReadFile(filepath.Join(dataDir, "caddy", filepath.FromSlash(gunshu.GuardKey(n.manager, ""))))
		if err != nil {
			t.Fatalf("run %d: guard file: %v", run, err)
		}
		if guard != nil && !bytes.Equal(stored, guard) {
			t.Fatalf("run %d: guard file changed from %s to %s", run, guard, stored)
		}
		guard = stored
	}
	if !slices.ContainsFunc(n.relays, func(r string) bool { return bytes.Contains(guard, []byte(r)) }) {
		t.Fatalf("guard file %s names none of the relays %v", guard, n.relays)
	}

	// --guards 0 keeps nothing.
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	if _, err := runGunshuCommand(t, "x", "dial", "--guards", "0", "--manager", n.manager, ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(os.Getenv("XDG_DATA_HOME"), "caddy")); !os.IsNotExist(err) {
		t.Fatalf("--guards 0 wrote to the data directory: %v", err)
	}
	if _, err := runGunshuCommand(t, "x", "dial", "--route-continue", "1", "--manager", n.manager, ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "route_continue") {
		t.Fatalf("--route-continue 1: error %v", err)
	}
}

func TestCommandIsRegistered(t *testing.T) {
	cmd, ok := caddycmd.Commands()["gunshu"]
	if !ok || cmd.CobraFunc == nil {
		t.Fatal(`"caddy gunshu" is not registered`)
	}
	root := &cobra.Command{Use: "gunshu"}
	cmd.CobraFunc(root)
	var subs []string
	for _, c := range root.Commands() {
		subs = append(subs, c.Name())
	}
	if strings.Join(subs, ",") != "dial,list" {
		t.Fatalf("subcommands %v, want dial and list", subs)
	}
}
