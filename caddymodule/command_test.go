package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
	"github.com/gunshu/caddy-gunshu/internal/testnet"
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

// listRows splits the rows of a "caddy gunshu list" table into fields,
// by address, after checking its header.
func listRows(t *testing.T, out string, header ...string) map[string][]string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || !slices.Equal(strings.Fields(lines[0]), header) {
		t.Fatalf("table header is not %q:\n%s", header, out)
	}
	rows := map[string][]string{}
	// The last two lines say the network's size and what it hides.
	for _, l := range lines[1 : len(lines)-2] {
		f := strings.Fields(l)
		if len(f) < 2 {
			t.Fatalf("row %q", l)
		}
		rows[f[1]] = f
	}
	return rows
}

// deadRelay registers a relay with manager and stops it: the manager
// still lists it, but nothing answers there any more.
func deadRelay(t *testing.T, manager string) string {
	t.Helper()
	ln := testkit.Listen(t)
	addr := ln.Addr().String()
	r := &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Self: []string{addr}}
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Serve(ln) }()
	err := gunshu.Register(context.Background(), manager, addr, 5*time.Second)
	ln.Close()
	_ = r.Close()
	<-done
	if err != nil {
		t.Fatalf("registering relay: %v", err)
	}
	return addr
}

func TestCommandList(t *testing.T) {
	n := testnet.New(t, 3)
	dead := deadRelay(t, n.ManagerAddr)
	out, err := runGunshuCommand(t, "", "list", "--manager", n.ManagerAddr, "--timeout", "2s")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("table:\n%s", out)
	rows := listRows(t, out, "#", "ADDRESS", "HEALTH", "LATENCY")
	if len(rows) != 4 {
		t.Fatalf("%d rows, want 4:\n%s", len(rows), out)
	}
	for _, r := range n.RelayAddrs() {
		f := rows[r]
		if len(f) != 5 || f[2] != healthHealthy || f[4] != "ms" {
			t.Fatalf("live relay %s: row %q\n%s", r, f, out)
		}
		if ms, err := strconv.ParseFloat(f[3], 64); err != nil || ms < 0 {
			t.Fatalf("live relay %s: latency %q", r, f[3])
		}
	}
	if f := rows[dead]; len(f) != 4 || f[2] != "failing" || f[3] != "-" {
		t.Fatalf("dead relay %s: row %q\n%s", dead, f, out)
	}
	// Four relays: an initiator with cover among them chooses from three.
	var d gunshu.Dialer
	if !strings.HasSuffix(out, "4 relay(s) listed by "+n.ManagerAddr+": 3 healthy, 1 failing\n"+
		"anonymity: too small to hide anyone well: "+d.RouteSizeWarning(3)+"\n") {
		t.Fatalf("footer:\n%s", out)
	}

	out, err = runGunshuCommand(t, "", "list", "--manager", n.ManagerAddr, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Manager string        `json:"manager"`
		Network networkView   `json:"network"`
		Relays  []listedRelay `json:"relays"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("JSON %q: %v", out, err)
	}
	if doc.Manager != n.ManagerAddr || len(doc.Relays) != 4 || doc.Network != networkOf([]string{healthHealthy, healthHealthy, healthHealthy, healthFailing}) {
		t.Fatalf("JSON %s", out)
	}
	for _, r := range doc.Relays {
		live := slices.Contains(n.RelayAddrs(), r.Address)
		switch {
		case live && (r.Health != healthHealthy || r.LatencyMS == nil || *r.LatencyMS <= 0 || r.Error != ""):
			t.Errorf("live relay %+v", r)
		case !live && (r.Address != dead || r.Health != "failing" || r.LatencyMS != nil || r.Error == ""):
			t.Errorf("dead relay %+v", r)
		}
	}
	// A bare "latency_ms" key, so scripts can rely on the name.
	if !strings.Contains(out, `"latency_ms":`) || !strings.Contains(out, `"health": "failing"`) {
		t.Fatalf("JSON lacks the health and latency_ms fields:\n%s", out)
	}

	// --no-test prints the addresses only.
	out, err = runGunshuCommand(t, "", "list", "--manager", n.ManagerAddr, "--no-test")
	if err != nil {
		t.Fatal(err)
	}
	rows = listRows(t, out, "#", "ADDRESS")
	want := append(slices.Clone(n.RelayAddrs()), dead)
	listed := slices.Collect(maps.Keys(rows))
	sort.Strings(listed)
	sort.Strings(want)
	if !slices.Equal(listed, want) {
		t.Fatalf("listed %v, want %v", listed, want)
	}
	for _, f := range rows {
		if len(f) != 2 {
			t.Fatalf("--no-test row %q", f)
		}
	}
	if !strings.Contains(out, "4 relay(s) listed by "+n.ManagerAddr+"\nanonymity: too small") {
		t.Fatalf("--no-test footer:\n%s", out)
	}
	out, err = runGunshuCommand(t, "", "list", "--manager", n.ManagerAddr, "--no-test", "--json")
	if err != nil || strings.Contains(out, `"health":`) || !strings.Contains(out, dead) || !strings.Contains(out, `"untested": 4`) {
		t.Fatalf("--no-test --json: %v\n%s", err, out)
	}
}

// commandAdminCaddyfile runs a manager whose patrol keeps failing
// services listed, so the admin API shows them failing.
const commandAdminCaddyfile = `{
	admin {admin}
	storage file_system {storage}
	gunshu {
		manager main {
			patrol_interval 200ms
			test_timeout 1s
			max_failures 1000
			allow 127.0.0.0/8
			max_per_ip 0
		}
	}
	layer4 {
		{manager} {
			@gunshu gunshu reg list
			route @gunshu {
				gunshu_manager main
			}
		}
	}
}
`

func TestCommandListFromAdminAPI(t *testing.T) {
	admin, manager := testkit.FreeAddr(t), testkit.FreeAddr(t)
	caddyfile := strings.NewReplacer("{admin}", admin, "{manager}", manager, "{storage}", t.TempDir()).Replace(commandAdminCaddyfile)
	loadCaddyfile(t, caddyfile)

	// One live relay, run by the test, and one registered then stopped.
	ln := testkit.Listen(t)
	live := ln.Addr().String()
	r := &gunshu.Relay{Policy: testnet.LoopbackPolicy(), Self: []string{live}}
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Serve(ln) }()
	t.Cleanup(func() { ln.Close(); _ = r.Close(); <-done })
	if err := gunshu.Register(context.Background(), manager, live, 5*time.Second); err != nil {
		t.Fatalf("registering relay: %v", err)
	}
	dead := deadRelay(t, manager)

	// Wait for the patrol to have tested both.
	var m managerView
	testkit.Eventually(t, 15*time.Second, "a patrol test of both services", func() bool {
		out, err := runGunshuCommand(t, "", "list", "--admin", "--address", admin, "--name", "main", "--json")
		if err != nil {
			t.Fatal(err)
		}
		m = managerView{}
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("--json %q: %v", out, err)
		}
		return len(m.Services) == 2 && !slices.ContainsFunc(m.Services, func(s serviceView) bool { return s.LastTest == nil })
	})
	if m.Name != "main" || m.Network != networkOf([]string{healthHealthy, healthFailing}) {
		t.Errorf("manager %q with network %+v", m.Name, m.Network)
	}
	for _, s := range m.Services {
		switch s.Address {
		case live:
			if s.Health != healthHealthy || s.LastTestLatencyMS == nil || s.ConsecutiveFailures != 0 {
				t.Errorf("live relay %+v", s)
			}
		case dead:
			if s.Health != healthFailing || s.LastTestLatencyMS != nil || s.ConsecutiveFailures < 1 {
				t.Errorf("dead relay %+v", s)
			}
		default:
			t.Errorf("unexpected service %+v", s)
		}
	}

	// The table, with the endpoint found in the config file, as "caddy
	// stop" finds it.
	config := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(config, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runGunshuCommand(t, "", "list", "--admin", "--config", config, "--name", "main")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("table:\n%s", out)
	rows := listRows(t, out, "#", "ADDRESS", "HEALTH", "LATENCY", "FAILURES", "LAST", "REGISTERED")
	if f := rows[live]; len(f) != 8 || f[2] != healthHealthy || f[4] != "ms" || f[5] != "0" || f[7] != "ago" {
		t.Fatalf("live relay row %q:\n%s", f, out)
	}
	if f := rows[dead]; len(f) != 7 || f[2] != healthFailing || f[3] != "-" || f[4] == "0" || f[6] != "ago" {
		t.Fatalf("dead relay row %q:\n%s", f, out)
	}
	var d gunshu.Dialer
	if !strings.HasSuffix(out, "2 service(s) of manager \"main\": 1 healthy, 1 failing, 0 untested\n"+
		"anonymity: too small to hide anyone well: "+d.RouteSizeWarning(1)+"\n") {
		t.Fatalf("footer:\n%s", out)
	}

	// Errors: an unknown manager (the default name here), a Caddy that
	// does not answer, --manager with --admin, --no-test with --admin, the
	// former --admin <address>.
	closed := testkit.ClosedAddr(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "--admin", "--address", admin}, `no gunshu manager named "default": the Caddy at ` + admin + ` runs main (choose one with --name)`},
		{[]string{"list", "--admin", "--address", admin, "--name", "a/b"}, `no gunshu manager named "a/b"`},
		{[]string{"list", "--admin", "--address", closed, "--timeout", "2s"}, "reading the admin API at " + closed},
		{[]string{"list", "--admin", "--config", filepath.Join(t.TempDir(), "none.json")}, "finding the admin endpoint"},
		{[]string{"list", "--admin", "--address", admin, "--manager", manager}, "none of the others can be"},
		{[]string{"list", "--admin", "--address", admin, "--name", "main", "--no-test"}, "--no-test applies to --manager only"},
		{[]string{"list", "--admin", admin}, "--admin takes no value: give the admin endpoint with --address " + admin},
	} {
		out, err := runGunshuCommand(t, "", c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v (printed %q), want %q", c.args, err, out, c.want)
		}
	}
}

// "caddy gunshu list --admin" reaches an admin endpoint on a unix socket
// too, through Caddy's own request helper.
func TestCommandListFromAdminSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "gunshu-admin-") // short: a socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := "unix/" + filepath.Join(dir, "admin.sock")
	manager := testkit.FreeAddr(t)
	loadCaddyfile(t, strings.NewReplacer("{admin}", socket, "{manager}", manager, "{storage}", t.TempDir()).Replace(commandAdminCaddyfile))
	relay := deadRelay(t, manager)
	out, err := runGunshuCommand(t, "", "list", "--admin", "--address", socket, "--name", "main")
	if err != nil {
		t.Fatal(err)
	}
	if rows := listRows(t, out, "#", "ADDRESS", "HEALTH", "LATENCY", "FAILURES", "LAST", "REGISTERED"); len(rows) != 1 || rows[relay] == nil {
		t.Fatalf("rows %q, want %s:\n%s", rows, relay, out)
	}
}

func TestCommandErrors(t *testing.T) {
	dead := testkit.ClosedAddr(t)
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
	n := testnet.New(t, 3)
	// An upper-casing responder: it answers what it read, once input ends.
	ln := testkit.Listen(t)
	rl := (&gunshu.Responder{}).Listen(ln, 0)
	t.Cleanup(rl.Wait)
	testkit.Serve(t, rl, func(c net.Conn) {
		in, _ := io.ReadAll(c)
		c.Write(bytes.ToUpper(in))
		c.Close()
	})
	// The guards are kept in Caddy's default storage (TestMain points it
	// at a fresh directory), under the key of an entrance without cover.
	key := cliGuardKey(n.ManagerAddr)
	ctx := context.Background()
	_ = caddy.DefaultStorage.Delete(ctx, key)
	input := strings.Repeat("hello through the crowd\n", 1000)
	var guard []byte
	for run := range 3 {
		out, err := runGunshuCommand(t, input, "dial", "--manager", n.ManagerAddr, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if out != strings.ToUpper(input) {
			t.Fatalf("got %d bytes, want %d", len(out), len(input))
		}
		// The same guard for every run.
		stored, err := caddy.DefaultStorage.Load(ctx, key)
		if err != nil {
			t.Fatalf("run %d: stored guards: %v", run, err)
		}
		if guard != nil && !bytes.Equal(stored, guard) {
			t.Fatalf("run %d: stored guards changed from %s to %s", run, guard, stored)
		}
		guard = stored
	}
	if !slices.ContainsFunc(n.RelayAddrs(), func(r string) bool { return bytes.Contains(guard, []byte(r)) }) {
		t.Fatalf("stored guards %s name none of the relays %v", guard, n.RelayAddrs())
	}

	// A run opens its route under the guards' storage lock: while another
	// holds it, it waits, within --timeout.
	if err := caddy.DefaultStorage.Lock(ctx, key); err != nil {
		t.Fatal(err)
	}
	_, err := runGunshuCommand(t, "x", "dial", "--timeout", "1s", "--manager", n.ManagerAddr, ln.Addr().String())
	if unlockErr := caddy.DefaultStorage.Unlock(ctx, key); unlockErr != nil {
		t.Fatal(unlockErr)
	}
	if err == nil || !strings.Contains(err.Error(), "locking the guards in Caddy's storage") {
		t.Fatalf("dial while the guards are locked: %v", err)
	}
	if _, err := runGunshuCommand(t, "x", "dial", "--manager", n.ManagerAddr, ln.Addr().String()); err != nil {
		t.Fatalf("dial once the guards are unlocked: %v", err)
	}

	// --guards 0 keeps nothing.
	if err := caddy.DefaultStorage.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := runGunshuCommand(t, "x", "dial", "--guards", "0", "--manager", n.ManagerAddr, ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if caddy.DefaultStorage.Exists(ctx, key) {
		t.Fatal("--guards 0 stored guards")
	}
	if _, err := runGunshuCommand(t, "x", "dial", "--route-continue", "1", "--manager", n.ManagerAddr, ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "route_continue") {
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
