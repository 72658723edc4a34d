package redisregistry

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gunshu/caddy-gunshu/internal/redistest"
	"github.com/gunshu/caddy-gunshu/internal/registrytest"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// TestCredentialErrors: a missing or wrong password is reported as what
// it is, in the errors and in the log, not as Redis's protocol error.
func TestCredentialErrors(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "right-password")
	for _, c := range []struct {
		name, username, password string
		want                     error
		log                      string
	}{
		{"no password", "", "", ErrAuthRequired, "Redis requires authentication"},
		{"wrong password", "", "wrong", ErrAuthFailed, "Redis authentication failed"},
		{"unknown user", "nobody", "right-password", ErrAuthFailed, "Redis authentication failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			core, logs := observer.New(zap.InfoLevel)
			r := newRegistry(t, srv, Options{Redis: redis.UniversalOptions{Username: c.username, Password: c.password},
				Logger: zap.New(core), Timeout: 2 * time.Second})
			ctx := context.Background()
			if _, err := r.Addrs(ctx); !errors.Is(err, c.want) {
				t.Fatalf("Addrs: %v, want %v", err, c.want)
			}
			if err := r.Register(ctx, "127.0.0.1:1", "127.0.0.1", time.Now()); !errors.Is(err, c.want) {
				t.Fatalf("Register: %v, want %v", err, c.want)
			}
			if _, err := r.ClaimPatrol(ctx, []string{"127.0.0.1:1"}, time.Second); !errors.Is(err, c.want) {
				t.Fatalf("ClaimPatrol: %v, want %v", err, c.want)
			}
			if n := logs.FilterMessageSnippet(c.log).Len(); n != 1 {
				t.Fatalf("%d log lines saying %q, want 1; logs: %v", n, c.log, logs.All())
			}
		})
	}
	t.Run("right password", func(t *testing.T) {
		r := newRegistry(t, srv, Options{Redis: redis.UniversalOptions{Password: "right-password"}})
		if err := r.Register(context.Background(), "127.0.0.1:1", "127.0.0.1", time.Now()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestLeastPrivilegeACLUser: a Redis user with exactly ACLRules does
// everything the registry does (register, list, patrol, record tests,
// read the services, remove, leave patrol); take one right away and the
// registry says which kind of error it is.
func TestLeastPrivilegeACLUser(t *testing.T) {
	srv := redistest.Start(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	ctx := context.Background()
	setUser := func(name string, rules ...string) {
		t.Helper()
		args := []any{"ACL", "SETUSER", name, "reset", "on", ">pw-" + name}
		for _, r := range rules {
			args = append(args, r)
		}
		if err := admin.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("ACL SETUSER %s: %v", name, err)
		}
	}
	setUser("gunshu", strings.Fields(ACLRules)...)
	// The default user may do nothing: only the ACL user's rights count.
	if err := admin.Do(ctx, "ACL", "SETUSER", "default", "off").Err(); err != nil {
		t.Fatal(err)
	}

	var warnings []string
	core, logs := observer.New(zap.WarnLevel)
	open := func(user string) *Registry {
		return newRegistry(t, srv, Options{Redis: redis.UniversalOptions{Username: user, Password: "pw-" + user},
			Logger: zap.New(core), ExpireAfter: time.Minute})
	}
	a, b := open("gunshu"), open("gunshu")
	now := time.Now()
	if err := a.Register(ctx, "127.0.0.1:1", "127.0.0.1", now); err != nil {
		t.Fatalf("Register: %v", err)
	}
	if err := a.Register(ctx, "127.0.0.2:1", "127.0.0.2", now); err != nil {
		t.Fatalf("Register: %v", err)
	}
	testkit.Eventually(t, 2*time.Second, "b lists both services", func() bool { return len(registrytest.SortedAddrs(t, b)) == 2 })
	if _, err := a.ClaimPatrol(ctx, []string{"127.0.0.1:1"}, time.Second); err != nil {
		t.Fatalf("ClaimPatrol: %v", err)
	}
	if _, err := b.RecordTest(ctx, "127.0.0.1:1", false, time.Millisecond, now); err != nil {
		t.Fatalf("RecordTest: %v", err)
	}
	if _, err := b.RecordTest(ctx, "127.0.0.2:1", true, time.Millisecond, now); err != nil {
		t.Fatalf("RecordTest: %v", err)
	}
	if svcs, err := a.Services(ctx); err != nil || len(svcs) != 2 || svcs[0].Failures != 1 {
		t.Fatalf("Services: %+v, %v", svcs, err)
	}
	if removed, err := b.Remove(ctx, "127.0.0.1:1"); err != nil || !removed {
		t.Fatalf("Remove: %v, %v", removed, err)
	}
	if err := a.Close(); err != nil { // leaves patrol
		t.Fatalf("Close: %v", err)
	}
	for _, e := range logs.All() {
		warnings = append(warnings, e.Message+" "+e.ContextMap()["error"].(string))
	}
	if len(warnings) > 0 {
		t.Fatalf("warnings with the least-privilege user: %v", warnings)
	}

	// Without HGETALL, Services is refused, and says why.
	rules := strings.Fields(strings.Replace(ACLRules, " +hgetall", "", 1))
	setUser("partial", rules...)
	p := open("partial")
	if _, err := p.Services(ctx); !errors.Is(err, ErrNoPermission) {
		t.Fatalf("Services without HGETALL: %v, want ErrNoPermission", err)
	}
}

// TestACLRulesDocumented: the README gives the operator the same rules.
func TestACLRulesDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), ACLRules) {
		t.Fatalf("README.md does not give the ACL rules the registry needs:\n%s", ACLRules)
	}
}
