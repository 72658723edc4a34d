package redisregistry

import "github.com/redis/go-redis/v9"

// Every script gets the same KEYS, in this order, so that they share one
// prelude. All keys carry one hash tag: in a Cluster they live in one slot,
// which is what lets a script check a cap and add in one atomic step.
const (
	keySeen     = "seen"     // ZSET addr -> last registration, unix ms
	keyFirst    = "first"    // HASH addr -> first registration, unix ms
	keyHost     = "host"     // HASH addr -> group counted by the per-IP cap
	keyHosts    = "hosts"    // HASH group -> services registered in it
	keyNet      = "net"      // HASH addr -> network counted by the per-network cap
	keyNets     = "nets"     // HASH network -> services registered in it
	keyFailures = "failures" // HASH addr -> consecutive failed tests
	keyTests    = "tests"    // HASH addr -> "unix_ms ok latency_ns" of the last test
	keyPatrol   = "patrol"   // ZSET patrolling manager id -> end of its heartbeat, Redis time ms
	keyVersion  = "version"  // STRING bumped whenever an address comes or goes
)

var keyNames = []string{keySeen, keyFirst, keyHost, keyHosts, keyFailures, keyTests, keyPatrol, keyVersion, keyNet, keyNets}

// prelude holds the helpers every script shares.
const prelude = `
local SEEN, FIRST, HOST, HOSTS, FAILURES, TESTS, PATROL, VERSION, NET, NETS =
	KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]

-- bump moves the version on. A missing version (a fresh or restarted
-- Redis) starts from the server clock in microseconds, so it never
-- repeats a version a manager saw before the restart.
local function bump()
	if redis.call('EXISTS', VERSION) == 0 then
		local t = redis.call('TIME')
		redis.call('SET', VERSION, t[1] .. string.format('%06d', tonumber(t[2])))
	end
	return redis.call('INCR', VERSION)
end

local function version()
	local v = redis.call('GET', VERSION)
	if v then return v end
	return tostring(bump())
end

-- uncount takes addr out of its per-IP group and its network.
local function uncount(addr)
	local host = redis.call('HGET', HOST, addr)
	if host and redis.call('HINCRBY', HOSTS, host, -1) <= 0 then
		redis.call('HDEL', HOSTS, host)
	end
	local net = redis.call('HGET', NET, addr)
	if net and redis.call('HINCRBY', NETS, net, -1) <= 0 then
		redis.call('HDEL', NETS, net)
	end
	redis.call('HDEL', HOST, addr)
	redis.call('HDEL', NET, addr)
end

-- count puts addr in group and network (none if empty).
local function count(addr, group, net)
	redis.call('HSET', HOST, addr, group)
	redis.call('HINCRBY', HOSTS, group, 1)
	if net ~= '' then
		redis.call('HSET', NET, addr, net)
		redis.call('HINCRBY', NETS, net, 1)
	end
end

-- full returns -2 when group, -3 when network has no room left, else 0.
local function full(group, max_per_group, net, max_per_net)
	if max_per_group > 0 and tonumber(redis.call('HGET', HOSTS, group) or '0') >= max_per_group then return -2 end
	if net ~= '' and max_per_net > 0 and tonumber(redis.call('HGET', NETS, net) or '0') >= max_per_net then return -3 end
	return 0
end

-- drop removes addr and everything known of it; 1 if it was registered.
local function drop(addr)
	if redis.call('ZREM', SEEN, addr) == 0 then return 0 end
	uncount(addr)
	redis.call('HDEL', FIRST, addr)
	redis.call('HDEL', FAILURES, addr)
	redis.call('HDEL', TESTS, addr)
	bump()
	return 1
end

-- expire drops at most limit services last registered before before_ms
-- (0: expiry off).
local function expire(before_ms, limit)
	if before_ms <= 0 then return end
	local old = redis.call('ZRANGEBYSCORE', SEEN, '-inf', '(' .. before_ms, 'LIMIT', 0, limit)
	for _, addr in ipairs(old) do drop(addr) end
end

-- heartbeat keeps manager id among the patrolling managers for ttl_ms of
-- Redis time (none if id is empty), forgets those whose heartbeat ended,
-- and returns the live ones. Redis time: managers' clocks need not agree.
local function heartbeat(id, ttl_ms)
	local t = redis.call('TIME')
	local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
	redis.call('ZREMRANGEBYSCORE', PATROL, '-inf', now)
	if id ~= '' then redis.call('ZADD', PATROL, now + ttl_ms, id) end
	return redis.call('ZRANGE', PATROL, 0, -1)
end
`

// registerScript adds or refreshes ARGV[1] in group ARGV[2] and network
// ARGV[7] ("": none) at ARGV[3] ms under the caps ARGV[4] (services),
// ARGV[5] (per group) and ARGV[8] (per network), after expiring services
// last seen before ARGV[6]. A refresh whose group changed is counted in
// the new group, or dropped when that is full, as gunshu.MemoryRegistry
// does. It returns 1 added, 0 refreshed, -1 registry full, -2 group full,
// -3 network full.
var registerScript = redis.NewScript(prelude + `
local addr, group, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local max_services, max_per_group = tonumber(ARGV[4]), tonumber(ARGV[5])
local net, max_per_net = ARGV[7], tonumber(ARGV[8])
expire(tonumber(ARGV[6]), 64)
local seen = redis.call('ZSCORE', SEEN, addr)
if seen then
	if redis.call('HGET', HOST, addr) == group then
		if tonumber(seen) < now then redis.call('ZADD', SEEN, now, addr) end
		return 0
	end
	uncount(addr)
	local refused = full(group, max_per_group, net, max_per_net)
	if refused ~= 0 then
		drop(addr)
		return refused
	end
	redis.call('ZADD', SEEN, math.max(now, tonumber(seen)), addr)
	count(addr, group, net)
	bump()
	return 0
end
if max_services > 0 and redis.call('ZCARD', SEEN) >= max_services then return -1 end
local refused = full(group, max_per_group, net, max_per_net)
if refused ~= 0 then return refused end
redis.call('ZADD', SEEN, now, addr)
redis.call('HSET', FIRST, addr, now)
count(addr, group, net)
bump()
return 1
`)

// removeScript drops ARGV[1]; 1 if it was registered.
var removeScript = redis.NewScript(prelude + `
return drop(ARGV[1])
`)

// recordTestScript stores the test of ARGV[1] (ok ARGV[2] = "1", at ARGV[3]
// ms, latency ARGV[4] ns) and returns the consecutive failures, or -1 if
// the address is not registered.
var recordTestScript = redis.NewScript(prelude + `
local addr = ARGV[1]
if not redis.call('ZSCORE', SEEN, addr) then return -1 end
redis.call('HSET', TESTS, addr, ARGV[3] .. ' ' .. ARGV[2] .. ' ' .. ARGV[4])
if ARGV[2] == '1' then
	redis.call('HDEL', FAILURES, addr)
	return 0
end
return redis.call('HINCRBY', FAILURES, addr, 1)
`)

// snapshotScript expires services last seen before ARGV[2], renews the
// patrol heartbeat of manager ARGV[3] for ARGV[4] ms (if ARGV[3] is not
// empty), and returns the version, followed by every registered address
// unless the version is still ARGV[1].
var snapshotScript = redis.NewScript(prelude + `
expire(tonumber(ARGV[2]), 256)
if ARGV[3] ~= '' then heartbeat(ARGV[3], tonumber(ARGV[4])) end
local v = version()
if v == ARGV[1] then return {v} end
local out = redis.call('ZRANGE', SEEN, 0, -1)
table.insert(out, 1, v)
return out
`)

// patrolScript renews the heartbeat of manager ARGV[1] for ARGV[2] ms and
// returns the ids of the patrolling managers.
var patrolScript = redis.NewScript(prelude + `
return heartbeat(ARGV[1], tonumber(ARGV[2]))
`)

// leaveScript takes manager ARGV[1] out of patrol at once.
var leaveScript = redis.NewScript(prelude + `
return redis.call('ZREM', PATROL, ARGV[1])
`)
