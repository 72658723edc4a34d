package caddymodule

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	dto "github.com/prometheus/client_model/go"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/internal/redistest"
)

func TestRedisRegistryCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`redis 10.0.0.1:6379 {
		addresses 10.0.0.2:6379 10.0.0.3:6379
		master_name gunshu-master
		db 2
		username gunshu
		password {env.REDIS_PASSWORD}
		tls
		key_prefix net1:
		timeout 1s
		snapshot_interval 250ms
		expire_after off
	}`)
	var got RedisRegistry
	if err := got.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := RedisRegistry{
		Addresses:  []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"},
		MasterName: "gunshu-master", DB: 2, Username: "gunshu", Password: "{env.REDIS_PASSWORD}",
		TLS: true, KeyPrefix: "net1:", Timeout: caddy.Duration(time.Second),
		SnapshotInterval: caddy.Duration(250 * time.Millisecond), ExpireAfter: -1,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}

	for _, bad := range []struct{ input, msg string }{
		{"redis {\n bogus 1\n}", `unknown redis registry option "bogus"`},
		{"redis {\n timeout soon\n}", `timeout: want a positive duration, got "soon"`},
		{"redis {\n snapshot_interval 0s\n}", `snapshot_interval: want a positive duration, got "0s"`},
		{"redis {\n db -1\n}", `db: want a non-negative integer, got "-1"`},
		{"redis {\n password\n}", "password needs one argument"},
		{"redis {\n tls yes\n}", `tls takes no arguments, got "yes"`},
		{"redis {\n addresses\n}", "addresses needs at least one argument"},
		{"redis {\n db 1\n db 2\n}", `duplicate option "db"`},
	} {
		var r RedisRegistry
		err := r.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad.input))
		if err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%q: error %v, want it to say %q", bad.input, err, bad.msg)
		}
	}
}

// loadRedisRegistry provisions the module from JSON as Caddy would, in a
// context whose cancellation (at the latest when the test ends) cleans the
// module up, as a config unload does.
func loadRedisRegistry(t *testing.T, config string) (*RedisRegistry, caddy.Context, context.CancelFunc, error) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	mod, err := ctx.LoadModuleByID("gunshu.registries.redis", json.RawMessage(config))
	if err != nil {
		return nil, ctx, cancel, err
	}
	return mod.(*RedisRegistry), ctx, cancel, nil
}

func redisRegistryOf(t *testing.T, m *RedisRegistry, p RegistryParams) gunshu.Registry {
	t.Helper()
	reg, err := m.Registry(p)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// gaugeValue reads the gauge name{key_prefix=prefix} from ctx's registry.
func gaugeValue(t *testing.T, ctx caddy.Context, name, prefix string) float64 {
	t.Helper()
	families, err := ctx.GetMetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetValue() == prefix }) {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{key_prefix=%q}", name, prefix)
	return 0
}

func TestRedisRegistrySharedAcrossInstances(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "s3cret")
	t.Setenv("GUNSHU_TEST_REDIS_PASSWORD", "s3cret")
	config := `{"addresses": ["` + srv.Addr + `"], "password": "{env.GUNSHU_TEST_REDIS_PASSWORD}",
		"key_prefix": "caddy:", "snapshot_interval": "100ms", "timeout": "500ms"}`
	modA, _, _, err := loadRedisRegistry(t, config)
	if err != nil {
		t.Fatal(err)
	}
	modB, ctxB, _, err := loadRedisRegistry(t, config)
	if err != nil {
		t.Fatal(err)
	}
	// Managers a and b, as two Caddy instances would run them.
	a := redisRegistryOf(t, modA, RegistryParams{Manager: "a", MaxServices: 1})
	b := redisRegistryOf(t, modB, RegistryParams{Manager: "b", MaxServices: 1})
	ctx := context.Background()
	if err := a.Register(ctx, "127.0.0.1:4000", "127.0.0.1", time.Now()); err != nil {
		t.Fatalf("registering through a: %v", err)
	}
	if err := a.Register(ctx, "127.0.0.1:4001", "127.0.0.1", time.Now()); err != gunshu.ErrRegistryFull {
		t.Fatalf("second registration under max_services 1: %v, want ErrRegistryFull", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		addrs, err := b.Addrs(ctx)
		if err == nil && slices.Equal(addrs, []string{"127.0.0.1:4000"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b lists %v, %v; want the service registered through a", addrs, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if up := gaugeValue(t, ctxB, "caddy_gunshu_registry_redis_up", "caddy:"); up != 1 {
		t.Fatalf("registry_redis_up = %v with Redis reachable", up)
	}

	// A wrong password: Redis refuses, reg would answer fail, the metric
	// says so.
	wrong, ctxW, _, err := loadRedisRegistry(t, `{"addresses": ["`+srv.Addr+`"], "password": "nope",
		"key_prefix": "wrong:", "snapshot_interval": "100ms", "timeout": "500ms"}`)
	if err != nil {
		t.Fatal(err)
	}
	if err := redisRegistryOf(t, wrong, RegistryParams{Manager: "w"}).Register(ctx, "127.0.0.1:4002", "127.0.0.1", time.Now()); err == nil {
		t.Fatal("registered with a wrong password")
	}
	if up := gaugeValue(t, ctxW, "caddy_gunshu_registry_redis_up", "wrong:"); up != 0 {
		t.Fatalf("registry_redis_up = %v with a wrong password", up)
	}
}

func TestRedisRegistryBadConfig(t *testing.T) {
	for _, bad := range []struct{ config, msg string }{
		{`{"addresses": ["localhost"]}`, `redis address "localhost": want host:port`},
		{`{"addresses": ["a:1", "b:1"], "db": 3}`, "a Cluster has only db 0"},
		{`{"timeout": -1}`, "must not be negative"},
		// An unset variable is an error, as everywhere else: a password
		// from it would connect without one.
		{`{"password": "{env.GUNSHU_TEST_UNSET_PASSWORD}"}`, "password: evaluated placeholder {env.GUNSHU_TEST_UNSET_PASSWORD} is empty"},
		{`{"username": "{env.GUNSHU_TEST_UNSET_USER}", "password": "x"}`, "username: evaluated placeholder {env.GUNSHU_TEST_UNSET_USER} is empty"},
		{`{"addresses": ["{env.GUNSHU_TEST_UNSET_ADDR}:6379"]}`, "addresses[0]: evaluated placeholder {env.GUNSHU_TEST_UNSET_ADDR} is empty"},
	} {
		if _, _, _, err := loadRedisRegistry(t, bad.config); err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%s: error %v, want it to say %q", bad.config, err, bad.msg)
		}
	}
}

func TestRedisRegistrySurvivesReload(t *testing.T) {
	srv := redistest.Start(t)
	config := `{"addresses": ["` + srv.Addr + `"], "key_prefix": "reload:", "timeout": "500ms"}`
	oldMod, _, unloadOld, err := loadRedisRegistry(t, config)
	if err != nil {
		t.Fatal(err)
	}
	oldReg := redisRegistryOf(t, oldMod, RegistryParams{Manager: "default", MaxPerIP: 1})
	// The new config loads before the old one is unloaded, as on reload.
	newMod, _, unloadNew, err := loadRedisRegistry(t, config)
	if err != nil {
		t.Fatal(err)
	}
	newReg := redisRegistryOf(t, newMod, RegistryParams{Manager: "default", MaxPerIP: 1})
	if oldReg != newReg {
		t.Fatal("a reload with the same settings made a second registry")
	}
	unloadOld()
	ctx := context.Background()
	if err := newReg.Register(ctx, "127.0.0.1:5000", "127.0.0.1", time.Now()); err != nil {
		t.Fatalf("registry after the old config was unloaded: %v", err)
	}
	// The manager's max_per_ip applies.
	if err := newReg.Register(ctx, "127.0.0.1:5001", "127.0.0.1", time.Now()); err != gunshu.ErrGroupFull {
		t.Fatalf("second service of one IP under max_per_ip 1: %v, want ErrGroupFull", err)
	}
	if _, err := newMod.Registry(RegistryParams{Manager: "other"}); err == nil {
		t.Fatal("one module instance served two managers")
	}
	unloadNew()
	if err := newReg.Register(ctx, "127.0.0.1:5002", "127.0.0.2", time.Now()); err == nil {
		t.Fatal("the registry still works after the last config using it was unloaded")
	}
}
