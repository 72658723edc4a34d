// Package caddygunshu is the root of the caddy-gunshu module. It holds no code of
// its own: it exists so that
//
//	xcaddy build --with github.com/gunshu/caddy-gunshu
//
// (which imports the module's root package) pulls in and registers every Gunshu
// Caddy module: the "gunshu" app and the layer4 handlers and matcher that live in
// the caddymodule package. Programs that embed Caddy themselves can blank-import
// this package for the same effect; see examples/caddy.
package caddygunshu

import (
	// Registers the gunshu app and the layer4.handlers.gunshu_* and
	// layer4.matchers.gunshu modules.
	_ "github.com/gunshu/caddy-gunshu/caddymodule"
)
