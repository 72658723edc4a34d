package caddymodule

// The Caddy integration tests run our modules beside Caddy's standard
// modules and caddy-l4's proxy, as the example binary does.
import (
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/mholt/caddy-l4/modules/l4proxy"
)
