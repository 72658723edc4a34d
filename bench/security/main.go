// Command security measures the attacks of issue #16 against two Caddy
// binaries in one run, the attacks alternating between them: "before"
// (a build of an earlier tree, with that tree's Caddyfile.example) and
// "after" (this tree). It prints one Markdown row per figure: what
// SECURITY.md's table shows. Run it through bench/security.sh, which
// builds both binaries.
//
//	go run ./bench/security -before /tmp/caddy-before -before-example old/Caddyfile.example \
//		-after /tmp/caddy-after -after-example Caddyfile.example
//
// Everything runs on loopback, every attack bounded in count and time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/attacks"
)

func main() {
	var t [2]tree
	flag.StringVar(&t[0].binary, "before", "", "Caddy binary of the tree before")
	flag.StringVar(&t[0].example, "before-example", "", "Caddyfile.example of the tree before")
	flag.StringVar(&t[1].binary, "after", "", "Caddy binary of this tree")
	flag.StringVar(&t[1].example, "after-example", "Caddyfile.example", "Caddyfile.example of this tree")
	rounds := flag.Int("rounds", 3, "rounds of the attacks with a random outcome")
	flag.Parse()
	if t[0].binary == "" || t[1].binary == "" || t[0].example == "" {
		log.Fatal("want -before, -before-example and -after")
	}
	t[0].name, t[1].name = "before", "after"
	fmt.Printf("# load %s\n", loadavg())
	fmt.Println("| attack | before | after |")
	fmt.Println("|---|---|---|")
	row := func(what string, f func(tree) string) {
		fmt.Printf("| %s | %s | %s |\n", what, f(t[0]), f(t[1]))
	}
	row("fake relays of 40 other addresses (80) registered from one source in ≤ 5 s: listed", sybils)
	row("reg of one third party's address from one source (1,000): connections the manager made to it", reflection)
	row("relays of one /24, each registering itself (20): listed", network)
	row(fmt.Sprintf("a responder registered as a relay; checksummed sessions through the entrance that got the other site's bytes (%d × 40)", *rounds),
		func(tr tree) string { return impostor(tr, *rounds) })
	row(fmt.Sprintf("est naming the relay under 127 other spellings, ending at a tarpit: most sockets the relay held for one attacker connection (max of %d)", *rounds),
		func(tr tree) string { return loop(tr, 127, *rounds) })
	row(fmt.Sprintf("the same with 19 spellings (max of %d)", *rounds), func(tr tree) string { return loop(tr, 19, *rounds) })
	row("next hops of #16.5 (15 spellings) that the relay's policy refused before dialing", policy)
	row("Caddyfile.example: log lines naming a client source or a destination after slow, vanishing and resetting clients, refused lists and proxy requests", logs)
	fmt.Printf("# load %s\n", loadavg())
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// tree is one side of the comparison.
type tree struct {
	name, binary, example string
}

// caddy is a running Caddy process.
type caddy struct {
	cmd  *exec.Cmd
	dir  string
	mu   sync.Mutex
	log  strings.Builder
	done chan struct{}
}

// start runs the binary on caddyfile in a directory of its own and waits
// until it serves.
func (tr tree) start(caddyfile string) *caddy {
	dir, err := os.MkdirTemp("", "gunshu-security-bench-")
	if err != nil {
		log.Fatal(err)
	}
	config := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(config, []byte(caddyfile), 0o600); err != nil {
		log.Fatal(err)
	}
	c := &caddy{dir: dir, done: make(chan struct{})}
	c.cmd = exec.Command(tr.binary, "run", "--config", config, "--adapter", "caddyfile")
	c.cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir+"/data", "XDG_CONFIG_HOME="+dir+"/config")
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		log.Fatal(err)
	}
	go func() {
		defer close(c.done)
		buf := make([]byte, 32<<10)
		for {
			n, err := stderr.Read(buf)
			c.mu.Lock()
			c.log.Write(buf[:n])
			c.mu.Unlock()
			if err != nil {
				_ = c.cmd.Wait()
				return
			}
		}
	}()
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(c.text(), "serving initial configuration"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			c.stop()
			log.Fatalf("%s: caddy did not start:\n%s", tr.name, c.text())
		}
	}
	return c
}

func (c *caddy) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.String()
}

// stop ends the process (SIGTERM, SIGKILL after 10 s) and its directory.
func (c *caddy) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	_ = os.RemoveAll(c.dir)
}

// waitLines waits up to wait for the log to hold n lines with want.
func (c *caddy) waitLines(want string, n int, wait time.Duration) int {
	deadline := time.Now().Add(wait)
	for {
		got := strings.Count(c.text(), want)
		if got >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sockets counts the process's open sockets.
func (c *caddy) sockets() (int, error) { return attacks.SocketsOf(c.cmd.Process.Pid) }

func freePort() string { return freePortOn("127.0.0.1") }

// freePortOn is a port free on ip a moment ago.
func freePortOn(ip string) string {
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// managerOnly is a manager with the defaults of its tree, loopback
// allowed as in Caddyfile.example.
func managerOnly(addr string) string {
	return fmt.Sprintf(`{
	admin off
	gunshu {
		manager {
			allow 127.0.0.0/8
		}
	}
	layer4 {
		%s {
			route {
				gunshu_manager
			}
		}
	}
}
`, addr)
}

func sybils(tr tree) string {
	mgr := "127.0.0.1:" + freePort()
	c := tr.start(managerOnly(mgr))
	defer c.stop()
	listed, err := attacks.SybilsOfOthers(context.Background(), mgr, "127.0.0.200")
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d of 80", listed)
}

func reflection(tr tree) string {
	mgr := "127.0.0.1:" + freePort()
	c := tr.start(managerOnly(mgr))
	defer c.stop()
	conns, sent, took, err := attacks.Reflection(context.Background(), mgr, "127.0.0.202", 1000)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d of %d reg (%.0f/s)", conns, sent, float64(conns)/took.Seconds())
}

func network(tr tree) string {
	mgr := "127.0.0.1:" + freePort()
	c := tr.start(managerOnly(mgr))
	defer c.stop()
	listed, err := attacks.NetworkSybils(context.Background(), mgr)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d of 20", listed)
}

// exampleNet is a tree's Caddyfile.example, edited, on free ports with
// the admin endpoint off.
func (tr tree) exampleNet(edit func(string) string) *attacks.Example {
	src, err := os.ReadFile(tr.example)
	if err != nil {
		log.Fatal(err)
	}
	e, err := attacks.NewExample(edit(string(src)), freePort)
	if err != nil {
		log.Fatal(err)
	}
	return e
}

// waitReady waits for the example's three relays to be listed and a
// request through the entrance to come back.
func waitReady(e *attacks.Example) error {
	relays := []string{e.Addr("7001"), e.Addr("7002"), e.Addr("7003")}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n, err := attacks.Listed(e.Addr("7000"), relays); err != nil || n < 3 {
			continue
		}
		if body, err := attacks.Through(e.Addr("8000"), "127.0.0.1", "/echo/ready"); err == nil && body == "/echo/ready" {
			return nil
		}
	}
	return errors.New("the example network did not come up")
}

func impostor(tr tree, rounds int) string {
	wrong, total, refused := 0, 0, 0
	for range rounds {
		responderB, siteBPort := "127.0.0.2:"+freePortOn("127.0.0.2"), freePortOn("127.0.0.2")
		e := tr.exampleNet(func(s string) string {
			s = strings.Replace(s, "\tlayer4 {\n", fmt.Sprintf("\tlayer4 {\n\t\t%s {\n\t\t\troute {\n\t\t\t\tgunshu_responder\n\t\t\t\tproxy 127.0.0.2:%s\n\t\t\t}\n\t\t}\n", responderB, siteBPort), 1)
			return s + fmt.Sprintf("\nhttp://:%s {\n\tbind 127.0.0.2\n\trespond \"site B\" 200\n}\n", siteBPort)
		})
		c := tr.start(e.Caddyfile)
		if err := waitReady(e); err != nil {
			c.stop()
			return err.Error()
		}
		if answer, _ := attacks.Exchange(attacks.From("127.0.0.2"), e.Addr("7000"), "reg\n"+responderB+"\n"); answer != "ok\n" {
			refused++
		}
		// The entrance reuses the list it fetched for 5 s (list_ttl):
		// let it see the new entry.
		time.Sleep(gunshu.DefaultListTTL + time.Second)
		for i := range 40 {
			path := fmt.Sprintf("/echo/%08x", uint32(i)*2654435761)
			if body, err := attacks.Through(e.Addr("8000"), "127.0.0.1", path); err != nil || body != path {
				wrong++
			}
			total++
		}
		c.stop()
	}
	return fmt.Sprintf("%d of %d (registration refused %d of %d times)", wrong, total, refused, rounds)
}

func loop(tr tree, spellings, rounds int) string {
	port := freePort()
	c := tr.start(attacks.LoopRelay(port, 128))
	defer c.stop()
	tarpit, err := attacks.Tarpit("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer tarpit.Close()
	list := attacks.Spellings(port, spellings, false, tarpit.Addrs[0])
	var peaks []int
	for range rounds {
		peak, _, err := attacks.Loop("127.0.0.1:"+port, list, c.sockets, 3*time.Second)
		if err != nil {
			return err.Error()
		}
		peaks = append(peaks, peak)
	}
	return fmt.Sprintf("%d (rounds: %v)", slices.Max(peaks), peaks)
}

func policy(tr tree) string {
	relay := "127.0.0.1:" + freePort()
	c := tr.start(fmt.Sprintf("{\n\tadmin off\n\tlayer4 {\n\t\t%s {\n\t\t\troute {\n\t\t\t\tgunshu_relay\n\t\t\t}\n\t\t}\n\t}\n}\n", relay))
	defer c.stop()
	for _, next := range attacks.PolicySpellings {
		_, _ = attacks.Exchange(attacks.From("127.0.0.1"), relay, "est\n1\n"+next+"\n")
	}
	c.waitLines(`"command":"est"`, len(attacks.PolicySpellings), 10*time.Second)
	denied := strings.Count(c.text(), `"outcome":"policy_denied"`)
	return fmt.Sprintf("%d of %d", denied, len(attacks.PolicySpellings))
}

func logs(tr tree) string {
	e := tr.exampleNet(func(s string) string { return s })
	c := tr.start(e.Caddyfile)
	defer c.stop()
	if err := waitReady(e); err != nil {
		return err.Error()
	}
	secrets := attacks.ProvokeLogs(e.Targets())
	// The slow clients' lines come when caddy-l4 gives up on them.
	c.waitLines(`"msg":"matching connection"`, 6, 15*time.Second)
	lines := attacks.LinesNaming(c.text(), secrets)
	byLogger := map[string]int{}
	for _, l := range lines {
		i := strings.Index(l, `"logger":"`)
		if i < 0 {
			byLogger["?"]++
			continue
		}
		name := l[i+10:]
		byLogger[name[:strings.IndexByte(name, '"')]]++
	}
	var parts []string
	for name, n := range byLogger {
		parts = append(parts, fmt.Sprintf("%s %d", name, n))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", len(lines), strings.Join(parts, ", "))
}
