package redisregistry

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gunshu/caddy-gunshu/internal/redistest"
	"github.com/gunshu/caddy-gunshu/internal/registrytest"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// failoverBound is how long after a replica's promotion reg and patrol
// may fail (#18: go-redis alone took up to a minute in a Cluster).
const failoverBound = 10 * time.Second

// recovery tries reg (Register) and patrol (ClaimPatrol, then RecordTest)
// on r every 50 ms from promotion on, until both work, and returns how
// long each took after promotion and how many times reg failed.
func recovery(t *testing.T, r *Registry, promoted time.Time) (reg, patrol time.Duration, regFails int) {
	t.Helper()
	ctx := context.Background()
	deadline := promoted.Add(3 * failoverBound)
	for i := 0; reg == 0 || patrol == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("not back %v after the promotion: reg %v, patrol %v", 3*failoverBound, reg, patrol)
		}
		if reg == 0 {
			addr := fmt.Sprintf("127.0.1.1:%d", 1000+i)
			if err := r.Register(ctx, addr, "127.0.1.1:"+addr, time.Now()); err == nil {
				reg = time.Since(promoted)
			} else {
				regFails++
			}
		}
		if patrol == 0 {
			if _, err := r.ClaimPatrol(ctx, []string{"127.0.0.1:1"}, time.Second); err == nil {
				if _, err := r.RecordTest(ctx, "127.0.0.1:1", true, time.Millisecond, time.Now()); err == nil {
					patrol = time.Since(promoted)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return reg, patrol, regFails
}

// TestClusterFailover: a 6-node Cluster (3 masters, 3 replicas), two
// managers' registries, and kill -9 of the master that holds the
// registry's slot. Once its replica is promoted, reg and patrol work
// again within failoverBound, and the other manager lists what is
// registered after the failover.
func TestClusterFailover(t *testing.T) {
	nodes := redistest.StartCluster(t, 3, 1)
	byAddr := map[string]*redistest.Server{}
	var addrs []string
	for _, n := range nodes {
		byAddr[n.Addr] = n
		addrs = append(addrs, n.Addr)
	}
	const prefix = "failover:"
	master, replica := slotOwners(t, addrs, "{"+prefix+"}seen")

	a, b := registryPair(t, Options{Redis: redis.UniversalOptions{Addrs: addrs}, KeyPrefix: prefix})
	waitReplicated(t, replica, "{"+prefix+"}seen", 1)

	byAddr[master].Kill()
	killed := time.Now()
	waitRole(t, replica, "master", 30*time.Second)
	checkRecovery(t, a, b, killed, time.Now())
}

// TestSentinelFailover: a master, two replicas and three Sentinels
// (quorum 2); kill -9 of the master. Once the Sentinels switch to a
// replica (+switch-master), reg and patrol work again within
// failoverBound.
func TestSentinelFailover(t *testing.T) {
	master := redistest.Start(t)
	redistest.StartReplica(t, master)
	redistest.StartReplica(t, master)
	sentinels := redistest.StartSentinels(t, master, "gunshu-master", 3, 2)
	var addrs []string
	for _, s := range sentinels {
		addrs = append(addrs, s.Addr)
	}
	ctx := context.Background()
	a, b := registryPair(t, Options{Redis: redis.UniversalOptions{Addrs: addrs, MasterName: "gunshu-master"},
		KeyPrefix: "sentinel-failover:"})

	watch := redis.NewSentinelClient(&redis.Options{Addr: sentinels[0].Addr})
	defer watch.Close()
	sub := watch.Subscribe(ctx, "+switch-master")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription is live
		t.Fatal(err)
	}
	master.Kill()
	killed := time.Now()
	select {
	case msg := <-sub.Channel():
		t.Logf("Sentinel: %s", msg.Payload)
	case <-time.After(60 * time.Second):
		t.Fatal("the Sentinels did not switch master within 60s")
	}
	checkRecovery(t, a, b, killed, time.Now())
}

// registryPair opens the registries of two managers on o (timeouts of a
// second), registers a service at one and waits until the other lists it.
func registryPair(t *testing.T, o Options) (a, b *Registry) {
	t.Helper()
	o.Timeout = time.Second
	open := func() *Registry {
		r := New(o)
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	a, b = open(), open()
	if err := a.Register(context.Background(), "127.0.0.1:1", "127.0.0.1", time.Now()); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "b lists the service", func() bool { return len(registrytest.SortedAddrs(t, b)) == 1 })
	return a, b
}

// checkRecovery checks that reg and patrol work on a within failoverBound
// of the promotion, and that b lists what a registered then.
func checkRecovery(t *testing.T, a, b *Registry, killed, promoted time.Time) {
	t.Helper()
	reg, patrol, fails := recovery(t, a, promoted)
	t.Logf("promotion %v after the kill; reg back %v after it (%d failures), patrol back %v",
		promoted.Sub(killed).Round(10*time.Millisecond), reg.Round(10*time.Millisecond), fails, patrol.Round(10*time.Millisecond))
	if reg > failoverBound || patrol > failoverBound {
		t.Fatalf("reg back %v, patrol back %v after the promotion; want ≤ %v", reg, patrol, failoverBound)
	}
	testkit.Eventually(t, failoverBound, "b lists what a registered after the failover", func() bool {
		return len(registrytest.SortedAddrs(t, b)) >= 2
	})
}

// slotOwners returns the master and a replica of the slot of key.
func slotOwners(t *testing.T, addrs []string, key string) (master, replica string) {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	ctx := context.Background()
	slot, err := c.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range shards {
		if !slices.ContainsFunc(sh.Slots, func(r redis.SlotRange) bool { return r.Start <= slot && slot <= r.End }) {
			continue
		}
		for _, n := range sh.Nodes {
			addr := net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
			switch {
			case n.Role == "master":
				master = addr
			case n.Health == "online":
				replica = addr
			}
		}
	}
	if master == "" || replica == "" {
		t.Fatalf("no master with an online replica serves slot %d: %+v", slot, shards)
	}
	return master, replica
}

// waitRole waits until the node at addr says ROLE is role.
func waitRole(t *testing.T, addr, role string, within time.Duration) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		got, err := c.Do(ctx, "ROLE").Slice()
		cancel()
		if err == nil && len(got) > 0 && got[0] == role {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not %s within %v: %v %v", addr, role, within, got, err)
		}
	}
}

// waitReplicated waits until the replica at addr holds n members of key.
func waitReplicated(t *testing.T, addr, key string, n int64) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx := context.Background()
	if err := c.Do(ctx, "READONLY").Err(); err != nil && !strings.Contains(err.Error(), "cluster") {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the replica has the registry", func() bool {
		got, err := c.ZCard(ctx, key).Result()
		return err == nil && got == n
	})
}
