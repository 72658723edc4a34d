#!/usr/bin/env bash
# Runs the relay benchmarks of this directory and prints Gunshu's numbers
# as ratios against the baselines measured in the same run: a direct
# connection, a chain of minimal Go relays that only splice (io.Copy
# between *net.TCPConn), and a chain copying through 32 KiB buffers.
#
#   bench/run.sh                  # everything, about 3 minutes on 2 cores
#   COUNT=5 bench/run.sh          # more repetitions (averaged)
#   CAPACITY=0 bench/run.sh       # skip the 10,000-session run
#   BENCHTIME=3s bench/run.sh     # longer throughput runs
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-3}
BENCHTIME=${BENCHTIME:-1s}
SETUPTIME=${SETUPTIME:-2000x}
CAPACITY=${CAPACITY:-1}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "# $(go version), $(nproc) CPUs, $(uname -sr)"
go test -c -o "$out/bench.test" ./bench/
cd bench
run() { "$out/bench.test" -test.run '^$' -test.benchmem=false "$@"; }

echo "# throughput ($COUNT x $BENCHTIME per chain and direction)"
run -test.bench '^BenchmarkThroughput$' -test.benchtime "$BENCHTIME" -test.count "$COUNT" | tee "$out/throughput.txt" | grep -E '^Benchmark' | sed 's/^/  /'
echo "# route setup ($COUNT x $SETUPTIME)"
run -test.bench '^BenchmarkSetup$' -test.benchtime "$SETUPTIME" -test.count "$COUNT" | tee "$out/setup.txt" | grep -E '^Benchmark' | sed 's/^/  /'
echo "# idle sessions (1,000 through one relay process)"
run -test.bench '^BenchmarkIdleSessions$' -test.benchtime 1x | tee "$out/idle.txt" | grep -E '^Benchmark' | sed 's/^/  /'
if [ "$CAPACITY" = 1 ]; then
	echo "# capacity (up to 10,000 sessions through one relay process)"
	run -test.bench '^BenchmarkCapacity$' -test.benchtime 1x | tee "$out/capacity.txt" | grep -E '^Benchmark|stopped|serves' | sed 's/^/  /'
fi

# mean NAME UNIT FILE: the mean of the value tagged UNIT over the lines
# of benchmark NAME (the -N GOMAXPROCS suffix removed).
mean() {
	awk -v name="$1" -v unit="$2" '
		/^Benchmark/ {
			n = $1; sub(/-[0-9]+$/, "", n)
			if (n != name) next
			for (i = 3; i <= NF; i++) if ($(i) == unit) { s += $(i-1); c++ }
		}
		END { if (c) printf "%.6g", s / c; else print "nan" }' "$3"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "nan" || b == "nan") print "n/a"; else printf "%.2f", a / b }'; }
calc() { awk "BEGIN { printf \"%.4g\", $1 }"; }

echo
echo "== throughput: Gunshu relay chain vs baselines (>1 means Gunshu is faster) =="
printf '  %-5s %-4s %10s %10s %10s %10s %12s %12s\n' dir hops gunshuMB/s spliceMB/s copyMB/s directMB/s "vs splice" "vs 32K copy"
for dir in up down; do
	for k in 1 3 5; do
		g=$(mean "BenchmarkThroughput/$dir/gunshu$k" MB/s "$out/throughput.txt")
		s=$(mean "BenchmarkThroughput/$dir/splice$k" MB/s "$out/throughput.txt")
		c=$(mean "BenchmarkThroughput/$dir/copy$k" MB/s "$out/throughput.txt")
		d=$(mean "BenchmarkThroughput/$dir/direct" MB/s "$out/throughput.txt")
		printf '  %-5s %-4s %10.0f %10.0f %10.0f %10.0f %11sx %11sx\n' "$dir" "$k" "$g" "$s" "$c" "$d" "$(ratio "$g" "$s")" "$(ratio "$g" "$c")"
	done
done

echo
echo "== relay CPU per GiB per hop: (chain CPU - direct CPU) / hops (<1 means Gunshu uses less) =="
printf '  %-5s %-4s %14s %14s %14s %10s\n' dir hops gunshu-cpu-s splice-cpu-s copy-cpu-s "vs splice"
for dir in up down; do
	d=$(mean "BenchmarkThroughput/$dir/direct" cpu-s/GiB "$out/throughput.txt")
	for k in 1 3 5; do
		g=$(calc "($(mean "BenchmarkThroughput/$dir/gunshu$k" cpu-s/GiB "$out/throughput.txt") - $d) / $k")
		s=$(calc "($(mean "BenchmarkThroughput/$dir/splice$k" cpu-s/GiB "$out/throughput.txt") - $d) / $k")
		c=$(calc "($(mean "BenchmarkThroughput/$dir/copy$k" cpu-s/GiB "$out/throughput.txt") - $d) / $k")
		printf '  %-5s %-4s %14s %14s %14s %9sx\n' "$dir" "$k" "$g" "$s" "$c" "$(ratio "$g" "$s")"
	done
done

echo
echo "== route setup per hop: (k-hop time to first byte - 0-hop time) / k (<1 means Gunshu is faster) =="
g0=$(mean BenchmarkSetup/gunshu0 ns/op "$out/setup.txt")
s0=$(mean BenchmarkSetup/direct ns/op "$out/setup.txt")
printf '  0 hops: gunshu (est to the responder) %.1f us, plain dial %.1f us\n' "$(calc "$g0/1000")" "$(calc "$s0/1000")"
for k in 1 3 5; do
	g=$(calc "($(mean "BenchmarkSetup/gunshu$k" ns/op "$out/setup.txt") - $g0) / $k / 1000")
	s=$(calc "($(mean "BenchmarkSetup/splice$k" ns/op "$out/setup.txt") - $s0) / $k / 1000")
	printf '  %d hops: gunshu %8s us/hop, splice %8s us/hop, ratio %sx\n' "$k" "$g" "$s" "$(ratio "$g" "$s")"
done

echo
echo "== per idle relayed session, measured in the relay's own process =="
for r in gunshu splice; do
	printf '  %-7s heap+stack %7.0f B  rss %7.0f B  fds %4s  goroutines %4s\n' "$r" \
		"$(mean "BenchmarkIdleSessions/$r" heap+stack-B/session "$out/idle.txt")" \
		"$(mean "BenchmarkIdleSessions/$r" rss-B/session "$out/idle.txt")" \
		"$(mean "BenchmarkIdleSessions/$r" fds/session "$out/idle.txt")" \
		"$(mean "BenchmarkIdleSessions/$r" goroutines/session "$out/idle.txt")"
done
printf '  gunshu heap+stack vs the 12 KiB target: %sx\n' \
	"$(ratio "$(mean BenchmarkIdleSessions/gunshu heap+stack-B/session "$out/idle.txt")" 12288)"

if [ "$CAPACITY" = 1 ]; then
	echo
	echo "== capacity of one relay process (open-file limit $(ulimit -Hn)) =="
	printf '  sessions held %s of 10000, fds/session %s, relay fds at the end %s\n' \
		"$(mean BenchmarkCapacity sessions "$out/capacity.txt")" \
		"$(mean BenchmarkCapacity fds/session "$out/capacity.txt")" \
		"$(mean BenchmarkCapacity relay-fds "$out/capacity.txt")"
fi
