// Command caddy is Caddy v2 with the standard modules, the layer4 app
// (caddy-l4) and the Gunshu modules compiled in. It is the same program that
//
//	xcaddy build v2.11.9 --with github.com/gunshu/caddy-gunshu=. --with github.com/mholt/caddy-l4@v0.1.2
//
// produces, but built straight from this module's go.mod, so that
//
//	go run ./examples/caddy run --config Caddyfile.example --adapter caddyfile
//
// works from a checkout without xcaddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules (http app, tls, logging, Caddyfile adapter, ...).
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// The layer4 app and all of its standard handlers and matchers.
	_ "github.com/mholt/caddy-l4"

	// The Gunshu app, layer4 handlers and matcher.
	_ "github.com/gunshu/caddy-gunshu"
)

func main() {
	caddycmd.Main()
}
