package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/gunshu/caddy-gunshu/gunshu"
)

// SessionLimits bound the connections a manager or handler serves at once.
// Embedded in a module's config, its fields are the module's own options.
type SessionLimits struct {
	// MaxSessions caps the connections served at once; further ones get
	// fail (or, at an entrance, a reset). Default: 0, no cap.
	MaxSessions int `json:"max_sessions,omitempty"`
	// MaxSessionsPerIP caps the connections of one source address (an
	// IPv4 address, an IPv6 /64) served at once. The address is only
	// counted, never logged. Default: 0, no cap.
	MaxSessionsPerIP int `json:"max_sessions_per_ip,omitempty"`
}

func (l SessionLimits) validate() error {
	return notNegative(countOption("max_sessions", l.MaxSessions), countOption("max_sessions_per_ip", l.MaxSessionsPerIP))
}

// set reports whether any limit is configured.
func (l SessionLimits) set() bool { return l.MaxSessions > 0 || l.MaxSessionsPerIP > 0 }

// newLimiter returns a limiter of this config, or nil without limits.
func (l SessionLimits) newLimiter() *gunshu.SessionLimiter {
	if !l.set() {
		return nil
	}
	return &gunshu.SessionLimiter{MaxSessions: l.MaxSessions, MaxPerIP: l.MaxSessionsPerIP}
}

// limiters holds the limiters of servers with a stable identity (a
// manager's name, a relay's advertised address) across reloads: the
// sessions that the old config still serves go on counting against the
// new config's limits. The key holds the limits too, so a changed limit
// starts a fresh count.
var limiters = caddy.NewUsagePool()

// sharedLimiter is the pooled limiter of identity with limits l, or nil
// without limits. Pass the returned key to releaseLimiter in Cleanup.
func sharedLimiter(identity string, l SessionLimits) (*gunshu.SessionLimiter, string, error) {
	if !l.set() {
		return nil, "", nil
	}
	key := fmt.Sprintf("%s|%d|%d", identity, l.MaxSessions, l.MaxSessionsPerIP)
	val, _, err := limiters.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooled[*gunshu.SessionLimiter]{l.newLimiter()}, nil
	})
	if err != nil {
		return nil, "", err
	}
	return val.(pooled[*gunshu.SessionLimiter]).value, key, nil
}

// releaseLimiter drops a reference taken by sharedLimiter.
func releaseLimiter(key string) error {
	if key == "" {
		return nil
	}
	_, err := limiters.Delete(key)
	return err
}

// unmarshalOption reads opt into l when it is one of its options.
func (l *SessionLimits) unmarshalOption(d *caddyfile.Dispenser, opt string) (bool, error) {
	var err error
	switch opt {
	case "max_sessions":
		l.MaxSessions, err = intArg(d)
	case "max_sessions_per_ip":
		l.MaxSessionsPerIP, err = intArg(d)
	default:
		return false, nil
	}
	return true, err
}
