#!/bin/sh
# list of 1,000 services from a MemoryRegistry and from the Redis registry's
# snapshot (over TCP, and the registry part alone), and registrations per
# second of one manager, memory vs Redis. Memory and Redis alternate within
# each round so that both see the same machine load.
# Needs redis-server in PATH (Debian package redis-server); the benchmarks
# start it on a free loopback port and stop it.
set -eu
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || {
	echo "redis-server missing: apt-get install -y --no-install-recommends redis-server" >&2
	exit 1
}
go test -c -o /tmp/redisregistry.bench ./gunshu/redisregistry/
cd gunshu/redisregistry
for round in $(seq "${ROUNDS:-3}"); do
	echo "# round $round"
	/tmp/redisregistry.bench -test.run '^$' -test.bench 'BenchmarkList|BenchmarkRegister' \
		-test.benchtime "${BENCHTIME:-3000x}" 2>/dev/null | grep '^Benchmark'
	/tmp/redisregistry.bench -test.run '^$' -test.bench 'BenchmarkAddrs' -test.benchtime 1s 2>/dev/null | grep '^Benchmark'
done
