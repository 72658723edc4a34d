package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config is one run's shape.
type Config struct {
	Relays         int
	PerChild       int
	Managers       int
	Entrances      int
	ListEvery      time.Duration // each entrance asks a manager for the list this often
	RouteEvery     time.Duration // each entrance opens a route this often
	PatrolInterval time.Duration
	RegisterEvery  time.Duration
	ChurnPerMinute float64 // fraction of relays that die, and that join, per minute
	Duration       time.Duration
	RampTimeout    time.Duration
	MaxServices    int
	Seed           uint64
	Progress       io.Writer
}

// relayFleet is the relay children and what they report.
type relayFleet struct {
	children []*exec.Cmd
	stdin    []io.WriteCloser
	mu       sync.Mutex
	events   events
	wg       sync.WaitGroup
}

// events are what the relays reported, in unix ns.
type events struct {
	tests map[int][]int64 // patrol tests per relay
	regs  []regEvent
}

type regEvent struct {
	at, latency int64
	ok          bool
}

func startFleet(self, dir string, cfg Config, managers []string) (*relayFleet, error) {
	f := &relayFleet{events: events{tests: make(map[int][]int64)}}
	n := (cfg.Relays*3/2 + cfg.PerChild - 1) / cfg.PerChild // room for the joins
	for k := range n {
		cmd := exec.Command(self, "relays", strings.Join(managers, ","), cfg.RegisterEvery.String())
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("relays%d.log", k)))
		if err != nil {
			return nil, err
		}
		cmd.Stderr = logf
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		logf.Close()
		f.children = append(f.children, cmd)
		f.stdin = append(f.stdin, in)
		f.wg.Add(1)
		go f.read(out)
	}
	return f, nil
}

func (f *relayFleet) read(out io.Reader) {
	defer f.wg.Done()
	s := bufio.NewScanner(out)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		nums := make([]int64, len(fields)-1)
		for i, v := range fields[1:] {
			nums[i], _ = strconv.ParseInt(v, 10, 64)
		}
		f.mu.Lock()
		switch {
		case fields[0] == "T" && len(nums) == 2:
			f.events.tests[int(nums[0])] = append(f.events.tests[int(nums[0])], nums[1])
		case fields[0] == "R" && len(nums) == 4:
			f.events.regs = append(f.events.regs, regEvent{at: nums[1], latency: nums[2], ok: nums[3] == 1})
		}
		f.mu.Unlock()
	}
}

// send tells relay i's child to start or kill it.
func (f *relayFleet) send(verb string, i int) {
	fmt.Fprintf(f.stdin[i%len(f.stdin)], "%s %d\n", verb, i)
}

// stop closes the children's input (they exit) and waits for them.
func (f *relayFleet) stop() {
	for _, in := range f.stdin {
		in.Close()
	}
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	for _, c := range f.children {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
}

// Result is one tree's figures.
type Result struct {
	Tree, Commit           string
	Relays                 int // listed at the end
	Window                 time.Duration
	TestsPerRelayRound     float64
	PatrolBusy             time.Duration // of each interval
	TestGapP50, TestGapP99 time.Duration
	RegPerSec              float64
	RegP50, RegP99         time.Duration
	RegFailed              int
	ListP50, ListP99       time.Duration
	ListBytes              float64
	ListCPU                time.Duration // entrance CPU per list fetch and parse
	ManagerCPU             float64       // cores, mean over managers
	ManagerRSS, ManagerHWM float64       // MiB, mean
	RedisPerRelay          float64       // bytes
	RemovalP50, RemovalMax time.Duration
	Removed, Deaths        int
	ListedP50, ListedMax   time.Duration
	Listed, Joins          int
	Routes, RoutesFailed   int
	RouteP50, RouteP99     time.Duration // route opened and one echo through it
}

// runTree measures the Caddy built from tree.
func runTree(ctx context.Context, tree, work string, cfg Config) (*Result, error) {
	dir, err := os.MkdirTemp(work, filepath.Base(tree)+"-")
	if err != nil {
		return nil, err
	}
	caddy := filepath.Join(dir, "caddy")
	commit, err := buildCaddy(ctx, tree, caddy)
	if err != nil {
		return nil, err
	}
	res := &Result{Tree: tree, Commit: commit}
	say := func(format string, a ...any) {
		fmt.Fprintf(cfg.Progress, "scale %s: "+format+"\n", append([]any{filepath.Base(tree)}, a...)...)
	}

	redisProc, redisAddr, err := startRedis(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer redisProc.stop()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	emptyMem := usedMemory(ctx, rdb)

	var managers []*proc
	var addrs []string
	defer func() {
		for _, m := range managers {
			m.stop()
		}
	}()
	for i := range cfg.Managers {
		m, addr, err := startManager(ctx, caddy, dir, i, cfg, redisAddr)
		if err != nil {
			return nil, err
		}
		managers, addrs = append(managers, m), append(addrs, addr)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	fleet, err := startFleet(self, dir, cfg, addrs)
	if err != nil {
		return nil, err
	}
	defer fleet.stop()

	rnd := rand.New(rand.NewPCG(cfg.Seed, 17))
	live := make([]int, 0, cfg.Relays*2)
	for i := range cfg.Relays {
		fleet.send("start", i)
		live = append(live, i)
	}
	say("%d relays, %d managers up; waiting for the list to fill", cfg.Relays, cfg.Managers)
	if err := waitListed(ctx, rdb, cfg.Relays*98/100, cfg.RampTimeout, say); err != nil {
		return nil, err
	}

	// The measured window: churn, entrances, the watch on Redis.
	start := time.Now()
	cpu0 := make([]int64, len(managers))
	for i, m := range managers {
		cpu0[i] = cpuTicks(m.cmd.Process.Pid)
	}
	wctx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	watch := newWatcher(rdb)
	lists := &listStats{}
	var wg sync.WaitGroup
	for e := range cfg.Entrances {
		wg.Add(1)
		go func() { defer wg.Done(); lists.run(wctx, addrs, e, cfg.ListEvery) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); watch.run(wctx) }()
	resp, err := startResponder()
	if err != nil {
		return nil, err
	}
	defer resp.ln.Close()
	routes := &routeStats{}
	for e := range cfg.Entrances {
		wg.Add(1)
		go func() { defer wg.Done(); routes.run(wctx, addrs[e%len(addrs)], resp.addr(), cfg.RouteEvery) }()
	}

	next := cfg.Relays
	churnEvery := time.Duration(float64(time.Minute) / (cfg.ChurnPerMinute * float64(cfg.Relays)))
	tick := time.NewTicker(churnEvery)
churn:
	for {
		select {
		case <-wctx.Done():
			break churn
		case <-tick.C:
		}
		k := rnd.IntN(len(live))
		dead := live[k]
		live[k] = live[len(live)-1]
		live = live[:len(live)-1]
		fleet.send("kill", dead)
		watch.died(relayAddr(dead), time.Now())
		fleet.send("join", next)
		watch.joined(relayAddr(next), time.Now())
		live = append(live, next)
		next++
	}
	tick.Stop()
	wg.Wait()
	window := time.Since(start)
	res.Window = window
	for i, m := range managers {
		pid := m.cmd.Process.Pid
		res.ManagerCPU += float64(cpuTicks(pid)-cpu0[i]) / 100 / window.Seconds() / float64(len(managers))
		rss, hwm := memKB(pid)
		res.ManagerRSS += float64(rss) / 1024 / float64(len(managers))
		res.ManagerHWM += float64(hwm) / 1024 / float64(len(managers))
	}
	listed, _ := rdb.ZCard(ctx, "{gunshu:}seen").Result()
	res.Relays = int(listed)
	if listed > 0 {
		res.RedisPerRelay = float64(usedMemory(ctx, rdb)-emptyMem) / float64(listed)
	}
	res.ListCPU = listCPU(addrs[0], 50)
	lists.fill(res)
	routes.fill(res)
	watch.fill(res, start.Add(window), cfg.PatrolInterval)
	fleet.mu.Lock()
	fillPatrol(res, fleet.events, start, start.Add(window), cfg.PatrolInterval)
	fillRegs(res, fleet.events.regs, start, start.Add(window))
	fleet.mu.Unlock()
	say("done")
	return res, nil
}

func usedMemory(ctx context.Context, rdb *redis.Client) int64 {
	info, err := rdb.InfoMap(ctx, "memory").Result()
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
	return v
}

// waitListed waits until Redis lists n relays.
func waitListed(ctx context.Context, rdb *redis.Client, n int, timeout time.Duration, say func(string, ...any)) error {
	deadline := time.Now().Add(timeout)
	last := time.Now()
	for {
		got, err := rdb.ZCard(ctx, "{gunshu:}seen").Result()
		if err == nil && got >= int64(n) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d relays listed after %s", got, n, timeout)
		}
		if time.Since(last) > 15*time.Second {
			say("%d listed", got)
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
