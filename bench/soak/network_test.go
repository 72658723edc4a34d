package soak

import (
	"context"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/caddyproc"
	"github.com/gunshu/caddy-gunshu/internal/redistest"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

const masterName = "gunshu-soak"

// network is the soak's Gunshu network.
type network struct {
	redis     []*redistest.Server // master first, then replicas
	sentinels []*redistest.Server
	managers  []*node
	relays    []*node
	responder *node
	entrances *node
	// fixed, proxy are the entrances' addresses; target is the
	// responder's, which proxy clients ask for.
	fixed, proxy, target string
}

// node is one Caddy process of the network.
type node struct {
	role   string
	addr   string // its Gunshu listener
	config string
	proc   *caddyproc.Process

	// steady nodes are never killed nor restarted (only stopped and
	// reloaded), so that the drift of every kind of process through the
	// whole soak is measured.
	steady bool

	mu        sync.Mutex
	busy      bool // a chaos action is under way on it
	restarted bool // killed or restarted during the soak: no drift figures
}

func startNetwork(t *testing.T, relays int) *network {
	n := &network{}
	master := redistest.Start(t)
	n.redis = []*redistest.Server{master, redistest.StartReplica(t, master), redistest.StartReplica(t, master)}
	n.sentinels = redistest.StartSentinels(t, master, masterName, 3, 2)
	var sentinelAddrs []string
	for _, s := range n.sentinels {
		sentinelAddrs = append(sentinelAddrs, s.Addr)
	}

	addr := func() string { return "127.0.0.1:" + testkit.FreePort(t) }
	var managerAddrs []string
	for range 3 {
		managerAddrs = append(managerAddrs, addr())
	}
	for i, a := range managerAddrs {
		n.managers = append(n.managers, startNode(t, fmt.Sprintf("manager %d", i+1), a, fmt.Sprintf(`{
	gunshu {
		manager {
			allow 127.0.0.0/8
			# Ten relays on one address, registering every 15 s.
			max_per_ip 0
			max_per_network 0
			register_rate off
			patrol_interval 3s
			test_timeout 2s
			registry redis %s {
				master_name %s
				key_prefix soak:
				timeout 1s
			}
		}
	}
	layer4 {
		gunshu/%s {
			@gunshu gunshu reg list
			route @gunshu {
				gunshu_manager
			}
		}
	}
}
`, strings.Join(sentinelAddrs, " "), masterName, a)))
	}
	for i := range relays {
		a := addr()
		n.relays = append(n.relays, startNode(t, fmt.Sprintf("relay %d", i+1), a, fmt.Sprintf(`{
	layer4 {
		gunshu/%[1]s {
			@gunshu gunshu est test
			route @gunshu {
				gunshu_relay {
					managers %[2]s
					advertise %[1]s
					register_interval 15s
					allow 127.0.0.0/8
					dial_timeout 2s
					route_timeout %[3]s
					idle_timeout %[4]s
				}
			}
		}
	}
}
`, a, strings.Join(managerAddrs, " "), routeTimeout, idleTimeout)))
	}
	n.target = addr()
	n.responder = startNode(t, "responder", n.target, fmt.Sprintf(`{
	layer4 {
		gunshu/%s {
			route {
				gunshu_responder
				echo
			}
		}
	}
}
`, n.target))
	n.fixed, n.proxy = addr(), addr()
	entrance := func(responder, manager string) string {
		return fmt.Sprintf(`gunshu_initiator %s {
					manager %s
					dial_timeout 2s
					route_timeout %s
					idle_timeout %s
				}`, responder, manager, routeTimeout, idleTimeout)
	}
	n.entrances = startNode(t, "entrances", n.fixed, fmt.Sprintf(`{
	layer4 {
		gunshu/%s {
			route {
				%s
			}
		}
		gunshu/%s {
			route {
				%s
			}
		}
	}
}
`, n.fixed, entrance(n.target, managerAddrs[0]), n.proxy, entrance("", managerAddrs[1])))
	n.relays[0].steady, n.relays[1].steady, n.managers[2].steady = true, true, true
	n.waitListed(t, managerAddrs)
	return n
}

func startNode(t *testing.T, role, addr, config string) *node {
	return &node{role: role, addr: addr, config: config,
		proc: caddyproc.Start(t, caddyproc.Config{Name: role, Caddyfile: config})}
}

// waitListed waits until every manager lists every relay.
func (n *network) waitListed(t *testing.T, managers []string) {
	t.Helper()
	for _, m := range managers {
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			list, _ := gunshu.FetchList(context.Background(), m, time.Second, gunshu.MessageLimits{})
			if len(list) == len(n.relays) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("manager %s lists %d of the %d relays", m, len(list), len(n.relays))
			}
		}
	}
}

// claim marks a random node of nodes as under a chaos action (one that
// may end the process only if ends); nil when none is free.
func claim(nodes []*node, ends bool, pick func(int) int) *node {
	start := pick(len(nodes))
	for i := range nodes {
		nd := nodes[(start+i)%len(nodes)]
		if ends && nd.steady {
			continue
		}
		nd.mu.Lock()
		free := !nd.busy
		if free {
			nd.busy = true
		}
		nd.mu.Unlock()
		if free {
			return nd
		}
	}
	return nil
}

func (nd *node) release(restarted bool) {
	nd.mu.Lock()
	nd.busy = false
	nd.restarted = nd.restarted || restarted
	nd.mu.Unlock()
}

// healAll resumes stopped processes and starts killed ones, so the
// network ends whole; the chaos has ended.
func (n *network) healAll(t *testing.T) {
	for _, nd := range n.nodes() {
		if nd.proc.PID() == 0 {
			nd.proc.Restart()
		} else {
			nd.proc.Signal(syscall.SIGCONT)
		}
	}
}

func (n *network) nodes() []*node {
	return append(append([]*node{n.responder, n.entrances}, n.managers...), n.relays...)
}

// settle waits until no process serves a session any more.
func (n *network) settle(t *testing.T) {
	t.Helper()
	for _, nd := range n.nodes() {
		for deadline := time.Now().Add(hungAfter + 30*time.Second); ; time.Sleep(100 * time.Millisecond) {
			active, err := nd.proc.MetricSum("caddy_gunshu_sessions_active")
			if err == nil && active == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still serves sessions %v after the clients stopped (%v)", nd.role, hungAfter+30*time.Second, err)
			}
		}
	}
}

// stats are what one process holds at rest.
type stats struct {
	fds, goroutines int
	// pooled are descriptors kept by bounded pools, which grow with the
	// load up to their size and are no leak: the Redis client's
	// connections to Redis and the Sentinels, and the relay's idle splice
	// pipes (at most 256 pipes, 512 descriptors).
	redisConns, pipes int
	rss               int64 // bytes
	// peers counts the other descriptors by what they lead to: a role's
	// listener, a listening socket, a file: what a drift is made of.
	peers map[string]int
}

// measure reads the stats of every process that ran throughout.
func (n *network) measure(t *testing.T) map[string]stats {
	t.Helper()
	out := map[string]stats{}
	for _, nd := range n.nodes() {
		nd.mu.Lock()
		restarted := nd.restarted
		nd.mu.Unlock()
		if restarted {
			continue
		}
		pid := nd.proc.PID()
		var s stats
		if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
			s.fds = len(fds)
			remote := socketRemotePorts(pid)
			roles := n.rolesByPort()
			s.peers = map[string]int{}
			for _, fd := range fds {
				link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
				port, isTCP := remote[link]
				switch {
				case isTCP && n.redisPorts()[port]:
					s.redisConns++
				case isTCP && port == 0:
					s.peers["listening"]++
				case isTCP && roles[port] != "":
					s.peers["to "+roles[port]]++
				case isTCP:
					s.peers["tcp other"]++
				case strings.HasPrefix(link, "pipe:"):
					s.pipes++
				case strings.HasPrefix(link, "socket:"):
					s.peers["other socket"]++
				default:
					s.peers["file"]++
				}
			}
		}
		if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			if m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(status); m != nil {
				kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
				s.rss = kb << 10
			}
		}
		if g, err := nd.proc.MetricSum("go_goroutines"); err == nil {
			s.goroutines = int(g)
		}
		out[nd.role] = s
	}
	return out
}

// currentMaster is the Redis server the Sentinels name as master.
func (n *network) currentMaster(ctx context.Context) *redistest.Server {
	for _, s := range n.sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
		addr, err := c.GetMasterAddrByName(ctx, masterName).Result()
		c.Close()
		if err != nil || len(addr) != 2 {
			continue
		}
		for _, r := range n.redis {
			if r.Addr == addr[0]+":"+addr[1] {
				return r
			}
		}
	}
	return nil
}

// redisPorts are the ports of the Redis servers and Sentinels.
func (n *network) redisPorts() map[int]bool {
	ports := map[int]bool{}
	for _, r := range append(slices.Clone(n.redis), n.sentinels...) {
		_, p, _ := net.SplitHostPort(r.Addr)
		port, _ := strconv.Atoi(p)
		ports[port] = true
	}
	return ports
}

// socketRemotePorts maps the "socket:[inode]" links of TCP sockets in
// pid's network namespace to their remote ports.
func socketRemotePorts(pid int) map[string]int {
	out := map[string]int{}
	for _, file := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, file))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			_, portHex, found := strings.Cut(f[2], ":")
			port, err := strconv.ParseInt(portHex, 16, 32)
			if !found || err != nil {
				continue
			}
			out["socket:["+f[9]+"]"] = int(port)
		}
	}
	return out
}

// rolesByPort names the node listening on each port.
func (n *network) rolesByPort() map[int]string {
	out := map[int]string{}
	for _, nd := range n.nodes() {
		_, p, _ := net.SplitHostPort(nd.addr)
		port, _ := strconv.Atoi(p)
		out[port] = nd.role
	}
	_, p, _ := net.SplitHostPort(n.proxy)
	port, _ := strconv.Atoi(p)
	out[port] = "entrances"
	return out
}

// own are the descriptors a process holds besides its bounded pools.
func (s stats) own() int { return s.fds - s.redisConns - s.pipes }
