package main

import (
	"context"
	"fmt"
)

// PageVariant is one way the browser reaches the page.
type PageVariant struct {
	Name  string
	Tree  *Tree  // nil for the direct load
	socks string // the entrance's link; "" loads the page directly
	url   string
	net   *Network
}

// pageVariants are: the page straight from the site through one link,
// then for each tree through the SOCKS5 entrance with routes of exactly
// one relay, with the default route options, with the whole list offered
// (route lengths uniform over 1..relays), and where the tree has it with
// early_reply and routes of one relay: next to the one-relay variant, the
// same routes with the reply sent at once.
func pageVariants(site *Site, nets []*Network) []*PageVariant {
	vs := []*PageVariant{{Name: "direct (one link to the site)", url: "http://" + site.Link.Addr() + pagePath}}
	for _, n := range nets {
		url := "http://" + n.Responder.Addr() + pagePath
		vs = append(vs,
			&PageVariant{Name: "SOCKS5, routes of 1 relay (max_relays 1)", Tree: n.Tree, socks: n.ProxyOne.Addr(), url: url, net: n},
			&PageVariant{Name: "SOCKS5, default route options", Tree: n.Tree, socks: n.ProxyDefault.Addr(), url: url, net: n},
			&PageVariant{Name: fmt.Sprintf("SOCKS5, whole list offered (max_relays -1, %d relays)", len(n.Relays)), Tree: n.Tree, socks: n.Proxy.Addr(), url: url, net: n},
		)
		if n.ProxyOneEarly != nil {
			vs = append(vs, &PageVariant{Name: "SOCKS5 with `early_reply`, routes of 1 relay", Tree: n.Tree, socks: n.ProxyOneEarly.Addr(), url: url, net: n})
		}
	}
	return vs
}

// load loads the page once in a fresh browser and counts the routes its
// connections took.
func (v *PageVariant) load(ctx context.Context, em *Emulator, browser, profile string) PageResult {
	res := PageResult{Variant: v}
	before := em.Snapshot()
	res.Timing, res.Err = loadPage(ctx, browser, profile, v.socks, v.url)
	if v.net == nil {
		return res
	}
	after := em.Snapshot()
	res.Routes = before.Delta(after, v.net.Responder, EstConns)
	naming := EstNaming(v.net.Responder.Addr())
	for _, l := range v.net.Relays {
		res.Hops += before.Delta(after, l, naming)
	}
	return res
}
