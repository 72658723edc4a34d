package caddymodule

// What the modules share: values kept in a caddy.UsagePool across config
// reloads, and the check of options that must not be negative.

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// pooled lets a value that needs no cleanup of its own live in a
// caddy.UsagePool.
type pooled[T any] struct{ value T }

// Destruct implements caddy.Destructor: there is nothing to end.
func (pooled[T]) Destruct() error { return nil }

// option is a configured value that must not be negative, with the name
// its error gives.
type option struct {
	name     string
	value    any
	negative bool
}

func durationOption(name string, d caddy.Duration) option {
	return option{name, time.Duration(d), d < 0}
}

func countOption(name string, n int) option { return option{name, n, n < 0} }

// notNegative reports the first of opts that is negative.
func notNegative(opts ...option) error {
	for _, o := range opts {
		if o.negative {
			return fmt.Errorf("%s must not be negative, got %v", o.name, o.value)
		}
	}
	return nil
}
