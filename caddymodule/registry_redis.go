package caddymodule

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/gunshu/redisregistry"
)

func init() {
	caddy.RegisterModule(&RedisRegistry{})
}

// RedisRegistry keeps a manager's registry in Redis (standalone, Sentinel
// or Cluster), so that several managers — separate Caddy instances — serve
// one list. Caps are enforced atomically in Redis, patrol is shared out
// among the live managers, and list is answered from a local snapshot
// refreshed twice a second, which keeps answering while Redis is down.
// The registry, its snapshot and connections survive a config reload that
// keeps the manager's name and the connection settings.
type RedisRegistry struct {
	// Addresses of Redis (host:port): one standalone server, the nodes of
	// a Cluster, or the Sentinels when MasterName is set. Default
	// 127.0.0.1:6379.
	Addresses []string `json:"addresses,omitempty"`
	// MasterName selects Sentinel mode: the name of the monitored master.
	MasterName string `json:"master_name,omitempty"`
	// DB is the database number (standalone and Sentinel only).
	DB       int    `json:"db,omitempty"`
	Username string `json:"username,omitempty"`
	// Password; use a placeholder such as {env.REDIS_PASSWORD} to keep it
	// out of the config.
	Password string `json:"password,omitempty"`
	// TLS connects with TLS 1.2 or later, verifying the server's name.
	TLS bool `json:"tls,omitempty"`
	// KeyPrefix starts every key (default "gunshu:"); managers sharing a
	// registry use the same prefix, distinct networks distinct ones.
	KeyPrefix string `json:"key_prefix,omitempty"`
	// Timeout bounds each Redis operation (default 2s): how long reg can
	// wait on Redis before answering fail.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// SnapshotInterval is how often the local list is refreshed (default
	// 500ms): how stale list may be.
	SnapshotInterval caddy.Duration `json:"snapshot_interval,omitempty"`
	// ExpireAfter drops services not registered again for that long
	// (default 3m; negative: never). Keep it above the relays' register
	// interval.
	ExpireAfter caddy.Duration `json:"expire_after,omitempty"`

	opts    redisregistry.Options
	poolKey string
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*RedisRegistry) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "gunshu.registries.redis",
		New: func() caddy.Module { return new(RedisRegistry) },
	}
}

// Provision validates the config. The connection is made, or shared
// with the previous config, when the manager asks for its Registry.
func (r *RedisRegistry) Provision(ctx caddy.Context) error {
	r.logger = ctx.Logger(r)
	// Every placeholder must be set: a password from an unset variable
	// would connect without one.
	repl := caddy.NewReplacer()
	var (
		opts   redis.UniversalOptions
		prefix string
		err    error
	)
	for _, f := range []struct {
		name     string
		raw      string
		replaced *string
	}{
		{"master_name", r.MasterName, &opts.MasterName},
		{"username", r.Username, &opts.Username},
		{"password", r.Password, &opts.Password},
		{"key_prefix", r.KeyPrefix, &prefix},
	} {
		if *f.replaced, err = resolveSecret(repl, "redis registry: "+f.name, f.raw); err != nil {
			return err
		}
	}
	opts.DB = r.DB
	addrs := r.Addresses
	if len(addrs) == 0 {
		addrs = []string{"127.0.0.1:6379"}
	}
	for i, raw := range addrs {
		a, err := resolveSecret(repl, fmt.Sprintf("redis registry: addresses[%d]", i), raw)
		if err != nil {
			return err
		}
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return fmt.Errorf("redis address %q: want host:port", a)
		}
		opts.Addrs = append(opts.Addrs, a)
	}
	if r.DB < 0 {
		return fmt.Errorf("redis db %d: must not be negative", r.DB)
	}
	if r.DB != 0 && len(opts.Addrs) > 1 && opts.MasterName == "" {
		return errors.New("redis db: a Cluster has only db 0")
	}
	if err := notNegative(durationOption("timeout", r.Timeout), durationOption("snapshot_interval", r.SnapshotInterval)); err != nil {
		return fmt.Errorf("redis %w", err)
	}
	if prefix == "" {
		prefix = redisregistry.DefaultKeyPrefix
	}
	r.opts = redisregistry.Options{
		Redis:            opts,
		KeyPrefix:        prefix,
		Timeout:          time.Duration(r.Timeout),
		SnapshotInterval: time.Duration(r.SnapshotInterval),
		ExpireAfter:      time.Duration(r.ExpireAfter),
		Logger:           r.logger,
	}
	if r.TLS {
		r.opts.Redis.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	redisLoggerOnce.Do(func() { redis.SetLogger(redisLogger{caddy.Log().Named("gunshu.registries.redis.client")}) })
	initRedisRegistryMetrics(ctx)
	return nil
}

// redisRegistries holds the Redis registries by manager and connection
// settings, across reloads: a reload keeps the snapshot (which answers
// list while Redis is down), the connections and the patrol share.
var redisRegistries = caddy.NewUsagePool()

// pooledRedisRegistry lets a redisregistry.Registry live in a UsagePool.
type pooledRedisRegistry struct{ *redisregistry.Registry }

func (p pooledRedisRegistry) Destruct() error { return p.Close() }

// Registry returns the manager's registry, shared with the previous
// config if the manager and the connection settings are the same, with
// the manager's caps, which it enforces atomically in Redis. It also
// implements gunshu.PatrolClaimer, so the managers sharing it share
// patrol. All managers of one registry should use the same caps.
func (r *RedisRegistry) Registry(p RegistryParams) (gunshu.Registry, error) {
	if r.poolKey != "" {
		return nil, errors.New("redis registry already serves a manager")
	}
	key, err := r.settingsKey(p.Manager)
	if err != nil {
		return nil, err
	}
	val, _, err := redisRegistries.LoadOrNew(key, func() (caddy.Destructor, error) {
		o := r.opts
		up, age := redisRegistryGauges(o.KeyPrefix)
		o.OnRefresh = func(err error, snapshotAge time.Duration) {
			if err != nil {
				up.Set(0)
			} else {
				up.Set(1)
			}
			age.Set(snapshotAge.Seconds())
		}
		return pooledRedisRegistry{redisregistry.New(o)}, nil
	})
	if err != nil {
		return nil, err
	}
	r.poolKey = key
	reg := val.(pooledRedisRegistry).Registry
	reg.SetLimits(p.MaxServices, p.MaxPerIP)
	reg.SetMaxPerNetwork(p.MaxPerNetwork)
	return reg, nil
}

// settingsKey names the registry of manager with these settings; the
// password enters it hashed.
func (r *RedisRegistry) settingsKey(manager string) (string, error) {
	o := r.opts
	settings, err := json.Marshal([]any{manager, o.Redis.Addrs, o.Redis.MasterName, o.Redis.DB,
		o.Redis.Username, sha256.Sum256([]byte(o.Redis.Password)), o.Redis.TLSConfig != nil,
		o.KeyPrefix, o.Timeout, o.SnapshotInterval, o.ExpireAfter})
	if err != nil {
		return "", fmt.Errorf("redis registry settings: %w", err)
	}
	return string(settings), nil
}

// Cleanup releases this config's reference; the last one out hands the
// manager's patrol share over and disconnects.
func (r *RedisRegistry) Cleanup() error {
	if r.poolKey == "" {
		return nil
	}
	_, err := redisRegistries.Delete(r.poolKey)
	return err
}

// UnmarshalCaddyfile sets up the registry from Caddyfile tokens. Syntax:
//
//	redis [<address>...] {
//		addresses         <host:port>...
//		master_name       <name>
//		db                <number>
//		username          <name>
//		password          <password>
//		tls
//		key_prefix        <prefix>
//		timeout           <duration>
//		snapshot_interval <duration>
//		expire_after      <duration>|off
//	}
func (r *RedisRegistry) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	r.Addresses = append(r.Addresses, d.RemainingArgs()...)
	return parseOptions(d, "redis registry", nil, func(opt string) (bool, error) {
		var err error
		switch opt {
		case "addresses":
			r.Addresses, err = appendArgs(d, r.Addresses)
		case "tls":
			err = flagArg(d, &r.TLS)
		case "master_name":
			r.MasterName, err = oneArg(d)
		case "username":
			r.Username, err = oneArg(d)
		case "password":
			r.Password, err = oneArg(d)
		case "key_prefix":
			r.KeyPrefix, err = oneArg(d)
		case "db":
			r.DB, err = intArg(d)
		case "timeout":
			r.Timeout, err = positiveDurationArg(d, "")
		case "snapshot_interval":
			r.SnapshotInterval, err = positiveDurationArg(d, "")
		case "expire_after":
			r.ExpireAfter, err = positiveDurationArg(d, "off")
		default:
			return false, nil
		}
		return true, err
	}, "addresses")
}

// Metrics of the Redis registries, by key prefix.
var redisRegistryMetrics = struct {
	once        sync.Once
	up          *prometheus.GaugeVec
	snapshotAge *prometheus.GaugeVec
}{}

func initRedisRegistryMetrics(ctx caddy.Context) {
	m := &redisRegistryMetrics
	m.once.Do(func() {
		m.up = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "caddy", Subsystem: "gunshu", Name: "registry_redis_up",
			Help: "Whether the last refresh of the Redis registry's snapshot reached Redis.",
		}, []string{"key_prefix"})
		m.snapshotAge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "caddy", Subsystem: "gunshu", Name: "registry_snapshot_age_seconds",
			Help: "Age of the list snapshot a manager on the Redis registry answers from.",
		}, []string{"key_prefix"})
	})
	if err := registerCollectors(ctx.GetMetricsRegistry(), m.up, m.snapshotAge); err != nil {
		ctx.Logger().Warn("registering redis registry metrics", zap.Error(err))
	}
}

func redisRegistryGauges(prefix string) (up, age prometheus.Gauge) {
	m := &redisRegistryMetrics
	return m.up.WithLabelValues(prefix), m.snapshotAge.WithLabelValues(prefix)
}

var redisLoggerOnce sync.Once

// redisLogger sends the Redis client's own messages (dial retries and the
// like) to Caddy's log at debug level: the registry logs outages itself.
type redisLogger struct{ log *zap.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...))
}

// Interface guards
var (
	_ RegistryModule        = (*RedisRegistry)(nil)
	_ caddy.Module          = (*RedisRegistry)(nil)
	_ caddy.Provisioner     = (*RedisRegistry)(nil)
	_ caddy.CleanerUpper    = (*RedisRegistry)(nil)
	_ caddyfile.Unmarshaler = (*RedisRegistry)(nil)
	_ caddy.Destructor      = pooledRedisRegistry{}
)
