#!/bin/sh
# list of 1,000 services and registrations of one manager, memory registry
# vs Redis registry. The side-by-side benchmarks alternate the two request
# by request, so both see the same load on a shared machine, and report
# each side's rate and the ratio redis/memory. BenchmarkAddrs times the
# registry's part of list alone (map walk vs snapshot copy).
# Needs redis-server in PATH (Debian package redis-server); the benchmarks
# start it on a free loopback port and stop it.
set -eu
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || {
	echo "redis-server missing: apt-get install -y --no-install-recommends redis-server" >&2
	exit 1
}
exec go test -run '^$' -bench 'SideBySide|BenchmarkAddrs' -benchtime "${BENCHTIME:-2000x}" \
	-count "${COUNT:-3}" ./gunshu/redisregistry/
