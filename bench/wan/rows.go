package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Row is one variant of the table: how a request is made and which links
// its route crosses.
type Row struct {
	Name string
	Tree *Tree // nil: a baseline that runs no code of any tree
	Do   func(ctx context.Context, rnd *rand.Rand) (time.Duration, error)
	// Fit says whether the row's a + b·L is fitted (L varies).
	Fit bool

	entry    *Link   // the entrance's link: one connection per request
	hops     []*Link // relay links: L is how many carried the route
	hopCount Counter // what a route connection is on a relay link
	end      *Link   // the responder's (or site's) link: one route connection
	endCount Counter
}

// routeLength reads the route a request took from the links' counts
// before and after it: L is how many relay links carried one route
// connection. A request whose counts do not describe one route (a retried
// route, a stray connection) gets an error and is left out.
func (r *Row) routeLength(before, after Snapshot) (int, error) {
	if r.entry != nil {
		if n := before.Delta(after, r.entry, AllConns); n != 1 {
			return 0, fmt.Errorf("%d connections on the entrance's link", n)
		}
	}
	l := 0
	for _, h := range r.hops {
		switch n := before.Delta(after, h, r.hopCount); {
		case n > 1:
			return 0, fmt.Errorf("%d route connections on %s", n, h.Name)
		case n == 1:
			l++
		}
	}
	if n := before.Delta(after, r.end, r.endCount); n != 1 {
		return 0, fmt.Errorf("%d route connections on %s", n, r.end.Name)
	}
	if len(r.hops) > 0 && l == 0 {
		return 0, fmt.Errorf("no relay link carried the route")
	}
	return l, nil
}

// Row names, as in issue #14's table.
const (
	rowDirect     = "direct (one link to the site)"
	rowMinimal    = "chain of minimal Go relays that dial on accept (fixed next hop)"
	row2003       = "2003 client: est, wait ok, forward, request"
	rowFixed      = "`gunshu_initiator` fixed entrance"
	rowHTTP       = "HTTP-proxy entrance (absolute-form GET)"
	rowSOCKS      = "SOCKS5 entrance, curl-style client"
	rowSOCKSTor   = "SOCKS5 entrance, request right behind CONNECT"
	rowSOCKSEarly = "SOCKS5 entrance with `early_reply`, curl-style client"
)

// baselineRows are the rows that run no tree's code: the direct link and
// the chain of minimal relays, entered at a random relay so that L is
// uniform over 1..len(chain).
func baselineRows(site *Site, chain []*Link) []*Row {
	host := site.Link.Addr()
	return []*Row{
		{
			Name: rowDirect,
			Do: func(ctx context.Context, _ *rand.Rand) (time.Duration, error) {
				return plainGET(ctx, site.Link.Addr(), host)
			},
			end: site.Link, endCount: AllConns,
		},
		{
			Name: rowMinimal, Fit: true,
			Do: func(ctx context.Context, rnd *rand.Rand) (time.Duration, error) {
				return plainGET(ctx, chain[rnd.IntN(len(chain))].Addr(), host)
			},
			hops: chain, hopCount: AllConns,
			end: site.Link, endCount: AllConns,
		},
	}
}

// treeRows are the rows that run a tree's Gunshu network.
func treeRows(n *Network) []*Row {
	resp := n.Responder.Addr()
	relays := n.RelayAddrs()
	rows := []*Row{
		{Name: row2003, Do: func(ctx context.Context, rnd *rand.Rand) (time.Duration, error) {
			return gunshu2003GET(ctx, rnd, relays, resp)
		}},
		{Name: rowFixed, entry: n.Fixed, Do: func(ctx context.Context, _ *rand.Rand) (time.Duration, error) {
			return plainGET(ctx, n.Fixed.Addr(), resp)
		}},
		{Name: rowHTTP, entry: n.Proxy, Do: func(ctx context.Context, _ *rand.Rand) (time.Duration, error) {
			return proxyGET(ctx, n.Proxy.Addr(), resp)
		}},
		{Name: rowSOCKS, entry: n.Proxy, Do: func(ctx context.Context, _ *rand.Rand) (time.Duration, error) {
			return socksGET(ctx, n.Proxy.Addr(), resp, false)
		}},
		{Name: rowSOCKSTor, entry: n.Proxy, Do: func(ctx context.Context, _ *rand.Rand) (time.Duration, error) {
			return socksGET(ctx, n.Proxy.Addr(), resp, true)
		}},
	}
	if n.ProxyEarly != nil {
		rows = append(rows, &Row{Name: rowSOCKSEarly, entry: n.ProxyEarly, Do: func(ctx context.Context, _ *rand.Rand) (time.Duration, error) {
			return socksGET(ctx, n.ProxyEarly.Addr(), resp, false)
		}})
	}
	for _, r := range rows {
		r.Tree, r.Fit = n.Tree, true
		r.hops, r.hopCount = n.Relays, EstNaming(resp)
		r.end, r.endCount = n.Responder, EstConns
	}
	return rows
}
