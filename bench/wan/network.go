package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Site is the web site every row fetches from: a plain Caddy HTTP server
// (from the first tree) behind its own link. Responders proxy to it
// directly, as a responder runs next to the site it exposes.
type Site struct {
	Real string // the server's own address
	Link *Link  // what clients of the direct row and the minimal chain dial
	proc *Process
}

func startSite(ctx context.Context, em *Emulator, t *Tree, dir, www string) (*Site, error) {
	addr, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	s := &Site{Real: addr[0]}
	sites := fmt.Sprintf(`http://%s {
	bind 127.0.0.1
	handle %s {
		respond %q 200
	}
	handle {
		root * %s
		file_server
	}
}
`, s.Real, ttfbPath, ttfbBody, www)
	if s.proc, err = startCaddy(ctx, t, dir, "site", "", sites, s.Real); err != nil {
		return nil, err
	}
	if s.Link, err = em.NewLink("site", s.Real); err != nil {
		s.proc.Stop()
		return nil, err
	}
	return s, nil
}

// Stop ends the site's Caddy and closes its link.
func (s *Site) Stop() {
	s.proc.Stop()
	s.Link.Close()
}

// Network is one tree's Gunshu network, every part a Caddy process of
// its own: a manager (reached directly unless RouteOptions.ManagerLink:
// initiators cache its list), relays and a responder each behind their
// own link, and the entrances, each behind its own link.
type Network struct {
	Tree      *Tree
	Manager   string
	Relays    []*Link // each relay's link: the address it advertises
	Responder *Link
	// Entrances, each behind its own link.
	Fixed        *Link // gunshu_initiator with the responder fixed
	Proxy        *Link // SOCKS5 and HTTP proxy, routes as the rows want them
	ProxyOne     *Link // proxy with max_relays 1: every route holds one relay
	ProxyDefault *Link // proxy with the default route options
	// With early_reply (SOCKS5 success before the route's ok), where the
	// tree has it; nil otherwise.
	ProxyEarly    *Link // as Proxy
	ProxyOneEarly *Link // as ProxyOne

	em     *Emulator
	dir    string // the run's working directory
	prefix string // of the parts' names: the tree's label
	procs  []*Process
	links  []*Link
}

// RouteOptions shape the network's routes.
type RouteOptions struct {
	// MaxRelays is max_relays of the entrances the request rows use
	// (Fixed and Proxy); -1: the whole list, so route lengths are uniform
	// over 1..relays.
	MaxRelays int
	// ManagerLink puts the manager behind a link too, so an entrance's
	// list fetch costs what it would on a WAN.
	ManagerLink bool
}

// Caddyfile global options (inside the global block) of each part.
const (
	relayConfig = `	layer4 {
		%s {
			@gunshu gunshu est test
			route @gunshu {
				gunshu_relay {
					managers %s
					advertise %s
					allow 127.0.0.0/8
					register_interval 1h
				}
			}
		}
	}
`
	managerConfig = `	gunshu {
		manager {
			patrol_interval 1h
			allow 127.0.0.0/8
			max_per_ip 0
%s		}
	}
	layer4 {
		%s {
			@gunshu gunshu reg list
			route @gunshu {
				gunshu_manager
			}
		}
	}
`
	responderConfig = `	layer4 {
		%s {
			route {
				gunshu_responder
				proxy %s
			}
		}
	}
`
	entranceBlock = `		%s {
			route {
				gunshu_initiator %s {
					manager %s
					%s
				}
			}
		}
`
)

// startNetwork starts the tree's network with relays relays. Relays
// register once and the manager's patrol is an hour apart, so no patrol
// test crosses a relay's link during the run (links tell them apart from
// routes anyway).
func startNetwork(ctx context.Context, em *Emulator, t *Tree, dir string, relays int, site *Site, opts RouteOptions) (n *Network, err error) {
	n = &Network{Tree: t, em: em, dir: dir, prefix: t.Label + "-"}
	defer func() {
		if err != nil {
			n.Stop()
			n = nil
		}
	}()
	ports, err := freePorts(relays + 2 + numEntrances)
	if err != nil {
		return nil, err
	}
	if err := n.startManager(ctx, ports[0], opts.ManagerLink); err != nil {
		return nil, err
	}
	if err := n.startRelays(ctx, ports[1:1+relays]); err != nil {
		return nil, err
	}
	if err := n.startResponder(ctx, ports[1+relays], site); err != nil {
		return nil, err
	}
	if err := n.startEntrances(ctx, ports[2+relays:], opts.MaxRelays); err != nil {
		return nil, err
	}
	return n, n.waitListed(ctx)
}

func (n *Network) startManager(ctx context.Context, addr string, behindLink bool) error {
	open, err := n.openManagerOptions(ctx)
	if err != nil {
		return err
	}
	if err := n.start(ctx, n.prefix+"manager", fmt.Sprintf(managerConfig, open, addr), addr); err != nil {
		return err
	}
	n.Manager = addr
	if behindLink {
		l, err := n.link(n.prefix+"manager", addr)
		if err != nil {
			return err
		}
		n.Manager = l.Addr()
	}
	return nil
}

// startRelays starts a relay on each address, each advertising its link.
func (n *Network) startRelays(ctx context.Context, addrs []string) error {
	for i, addr := range addrs {
		l, err := n.link(fmt.Sprintf("%srelay%d", n.prefix, i+1), addr)
		if err != nil {
			return err
		}
		n.Relays = append(n.Relays, l)
		if err := n.start(ctx, l.Name, fmt.Sprintf(relayConfig, addr, n.Manager, l.Addr()), addr); err != nil {
			return err
		}
	}
	return nil
}

func (n *Network) startResponder(ctx context.Context, addr string, site *Site) error {
	var err error
	if n.Responder, err = n.link(n.prefix+"responder", addr); err != nil {
		return err
	}
	return n.start(ctx, n.prefix+"responder", fmt.Sprintf(responderConfig, addr, site.Real), addr)
}

// numEntrances is how many entrances startEntrances may start.
const numEntrances = 6

// startEntrances starts one Caddy with the entrances, each on its own
// address behind its own link. The early_reply ones only where the tree
// has the option.
func (n *Network) startEntrances(ctx context.Context, addrs []string, maxRelays int) error {
	rows := fmt.Sprintf("max_relays %d", maxRelays)
	early, err := n.accepts(ctx, fmt.Sprintf("\tlayer4 {\n\t\t127.0.0.1:1 {\n\t\t\troute {\n"+
		"\t\t\t\tgunshu_initiator {\n\t\t\t\t\tmanager %s\n\t\t\t\t\tearly_reply\n\t\t\t\t}\n\t\t\t}\n\t\t}\n\t}\n", n.Manager))
	if err != nil {
		return err
	}
	type entrance struct {
		link      **Link
		name      string
		responder string // "": proxy mode
		options   string
	}
	entrances := []entrance{
		{&n.Fixed, "fixed", n.Responder.Addr(), rows},
		{&n.Proxy, "proxy", "", rows},
		{&n.ProxyOne, "proxy-one", "", "max_relays 1"},
		{&n.ProxyDefault, "proxy-default", "", ""},
	}
	if early {
		entrances = append(entrances,
			entrance{&n.ProxyEarly, "proxy-early", "", rows + "\n\t\t\t\t\tearly_reply"},
			entrance{&n.ProxyOneEarly, "proxy-one-early", "", "max_relays 1\n\t\t\t\t\tearly_reply"})
	}
	var blocks strings.Builder
	for i, e := range entrances {
		if *e.link, err = n.link(n.prefix+e.name, addrs[i]); err != nil {
			return err
		}
		fmt.Fprintf(&blocks, entranceBlock, addrs[i], e.responder, n.Manager, e.options)
	}
	return n.start(ctx, n.prefix+"entrances", "\tlayer4 {\n"+blocks.String()+"\t}\n", addrs[:len(entrances)]...)
}

// managerLimits are the manager options that keep a network of many
// relays on 127.0.0.1 registering, in the off-forms of trees that have
// them; a tree without one has no such limit by default.
var managerLimits = []string{"register_rate off", "max_per_network 0", "require_source_match off"}

// openManagerOptions returns the lines of managerLimits the tree's Caddy
// accepts, each tried alone.
func (n *Network) openManagerOptions(ctx context.Context) (string, error) {
	var out strings.Builder
	for _, opt := range managerLimits {
		ok, err := n.accepts(ctx, fmt.Sprintf("\tgunshu {\n\t\tmanager {\n\t\t\t%s\n\t\t}\n\t}\n", opt))
		if err != nil {
			return "", err
		}
		if ok {
			fmt.Fprintf(&out, "\t\t\t%s\n", opt)
		}
	}
	return out.String(), nil
}

// accepts reports whether the tree's Caddy adapts a Caddyfile with these
// global options: whether the tree has an option at all.
func (n *Network) accepts(ctx context.Context, global string) (bool, error) {
	dir := filepath.Join(n.dir, n.Tree.Label, "adapt")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	f, err := os.CreateTemp(dir, "Caddyfile.*")
	if err != nil {
		return false, err
	}
	_, err = f.WriteString("{\n" + global + "}\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	return exec.CommandContext(ctx, n.Tree.Caddy, "adapt", "--config", f.Name(), "--adapter", "caddyfile").Run() == nil, nil
}

func (n *Network) start(ctx context.Context, name, global string, listen ...string) error {
	p, err := startCaddy(ctx, n.Tree, filepath.Join(n.dir, n.Tree.Label), name, global, "", listen...)
	if err != nil {
		return err
	}
	n.procs = append(n.procs, p)
	return nil
}

func (n *Network) link(name, target string) (*Link, error) {
	l, err := n.em.NewLink(name, target)
	if err != nil {
		return nil, err
	}
	n.links = append(n.links, l)
	return l, nil
}

// waitListed waits until the manager lists every relay at its link's
// address.
func (n *Network) waitListed(ctx context.Context) error {
	want := make([]string, 0, len(n.Relays))
	for _, l := range n.Relays {
		want = append(want, l.Addr())
	}
	slices.Sort(want)
	deadline := time.Now().Add(60 * time.Second)
	var got []string
	for time.Now().Before(deadline) {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		list, err := fetchList(lctx, n.Manager)
		cancel()
		if err == nil {
			slices.Sort(list)
			if slices.Equal(list, want) {
				return nil
			}
			got = list
		}
		if err := n.Alive(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: %w: the manager lists %v, want %v", n.Tree.Label, errNotRegistered, got, want)
}

// RelayAddrs are the addresses the relays advertise.
func (n *Network) RelayAddrs() []string {
	out := make([]string, len(n.Relays))
	for i, l := range n.Relays {
		out[i] = l.Addr()
	}
	return out
}

// Alive reports the first process that has exited.
func (n *Network) Alive() error {
	for _, p := range n.procs {
		if err := p.Alive(); err != nil {
			return err
		}
	}
	return nil
}

// Stop ends the processes (entrances first) and closes the links.
func (n *Network) Stop() {
	for i := len(n.procs) - 1; i >= 0; i-- {
		n.procs[i].Stop()
	}
	for _, l := range n.links {
		l.Close()
	}
}
