#!/usr/bin/env bash
# Runs the relay benchmarks of this directory and prints Gunshu's numbers
# as ratios against baselines measured in the same run: a direct
# connection, a chain of minimal Go relays that only splice (io.Copy
# between *net.TCPConn), and a chain copying through 32 KiB buffers.
# Rounds alternate all chains and every figure is the median over the
# rounds, so a burst of load elsewhere on the machine hits all chains
# alike instead of one.
#
#   bench/run.sh                 # 3 rounds, about 4 minutes on 2 cores
#   ROUNDS=7 bench/run.sh        # steadier medians
#   CAPACITY=0 bench/run.sh      # skip the 10,000-session run
#   BENCHTIME=2s bench/run.sh    # longer throughput runs
set -euo pipefail
cd "$(dirname "$0")"

ROUNDS=${ROUNDS:-3}
BENCHTIME=${BENCHTIME:-1s}
SETUPTIME=${SETUPTIME:-2000x}
CAPACITY=${CAPACITY:-1}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "# $(go version), $(nproc) CPUs, $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg)"
go test -c -o "$out/bench.test" .
run() { "$out/bench.test" -test.run '^$' "$@"; }

for round in $(seq "$ROUNDS"); do
	echo "# round $round of $ROUNDS: throughput ($BENCHTIME per chain and direction), route setup ($SETUPTIME)"
	run -test.bench '^BenchmarkThroughput$' -test.benchtime "$BENCHTIME" >>"$out/throughput.txt"
	run -test.bench '^BenchmarkSetup$' -test.benchtime "$SETUPTIME" >>"$out/setup.txt"
done
echo "# idle sessions: 1,000 through one relay process"
run -test.bench '^BenchmarkIdleSessions$' -test.benchtime 1x >"$out/idle.txt"
echo "# peak memory: 300 sessions echoing 64 KiB at once through relay processes, $ROUNDS rounds"
run -test.bench '^BenchmarkPeakMemory$' -test.benchtime 1x -test.count "$ROUNDS" >"$out/peak.txt"
if [ "$CAPACITY" = 1 ]; then
	echo "# capacity: up to 10,000 sessions through one relay process"
	run -test.bench '^BenchmarkCapacity$' -test.benchtime 1x >"$out/capacity.txt" || true
fi
echo "# load after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# raw results"
cat "$out"/*.txt | grep -E '^(Benchmark|\s+\S+_test.go)' | sed 's/^/  /'

# median NAME UNIT FILE: the median of the value tagged UNIT over the
# lines of benchmark NAME (the -N GOMAXPROCS suffix removed).
median() {
	awk -v name="$1" -v unit="$2" '
		/^Benchmark/ {
			n = $1; sub(/-[0-9]+$/, "", n)
			if (n != name) next
			for (i = 3; i <= NF; i++) if ($(i) == unit) v[c++] = $(i-1) + 0
		}
		END {
			if (!c) { print "nan"; exit }
			for (i = 1; i < c; i++) for (j = i; j > 0 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
			printf "%.6g", (c % 2) ? v[int(c/2)] : (v[c/2-1] + v[c/2]) / 2
		}' "$3"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "nan" || b == "nan") print "n/a"; else printf "%.2f", a / b }'; }
calc() { awk "BEGIN { printf \"%.4g\", $1 }"; }
T="$out/throughput.txt" S="$out/setup.txt" I="$out/idle.txt" C="$out/capacity.txt" P="$out/peak.txt"

echo
echo "== throughput, MB/s (ratio > 1: Gunshu faster) =="
printf '  %-5s %-4s %9s %9s %9s %9s %10s %11s\n' dir hops gunshu splice copy32K direct "vs splice" "vs copy32K"
for dir in up down; do
	d=$(median "BenchmarkThroughput/$dir/direct" MB/s "$T")
	for k in 1 3 5; do
		g=$(median "BenchmarkThroughput/$dir/gunshu$k" MB/s "$T")
		s=$(median "BenchmarkThroughput/$dir/splice$k" MB/s "$T")
		c=$(median "BenchmarkThroughput/$dir/copy$k" MB/s "$T")
		printf '  %-5s %-4s %9.0f %9.0f %9.0f %9.0f %9sx %10sx\n' "$dir" "$k" "$g" "$s" "$c" "$d" "$(ratio "$g" "$s")" "$(ratio "$g" "$c")"
	done
done

echo
echo "== relay CPU seconds per GiB per hop = (chain - direct) / hops (ratio < 1: Gunshu cheaper) =="
printf '  %-5s %-4s %9s %9s %9s %10s\n' dir hops gunshu splice copy32K "vs splice"
for dir in up down; do
	d=$(median "BenchmarkThroughput/$dir/direct" cpu-s/GiB "$T")
	for k in 1 3 5; do
		g=$(calc "($(median "BenchmarkThroughput/$dir/gunshu$k" cpu-s/GiB "$T") - $d) / $k")
		s=$(calc "($(median "BenchmarkThroughput/$dir/splice$k" cpu-s/GiB "$T") - $d) / $k")
		c=$(calc "($(median "BenchmarkThroughput/$dir/copy$k" cpu-s/GiB "$T") - $d) / $k")
		printf '  %-5s %-4s %9s %9s %9s %9sx\n' "$dir" "$k" "$g" "$s" "$c" "$(ratio "$g" "$s")"
	done
done

echo
echo "== route setup per hop = (k hops - 0 hops) / k, time to the server's first byte (ratio < 1: Gunshu faster) =="
echo "   gunshu: client waits for ok, then sends forward; gunshu-p: client sends forward right behind est;"
echo "   gunshu-w: gunshu-p through relays that wait for ok (wait_for_ok, the relays before cut-through)"
for unit in ns/op cpu-us/op; do
	scale=1000
	[ "$unit" = cpu-us/op ] && scale=1
	label="wall us"
	[ "$unit" = cpu-us/op ] && label="CPU us"
	s0=$(median BenchmarkSetup/direct "$unit" "$S")
	g0=$(median BenchmarkSetup/gunshu0 "$unit" "$S")
	p0=$(median BenchmarkSetup/gunshu0p "$unit" "$S")
	printf '  %s, 0 hops: plain dial %s, gunshu %s, gunshu-p %s\n' "$label" "$(calc "$s0/$scale")" "$(calc "$g0/$scale")" "$(calc "$p0/$scale")"
	for k in 1 3 5; do
		s=$(calc "($(median "BenchmarkSetup/splice$k" "$unit" "$S") - $s0) / $k / $scale")
		g=$(calc "($(median "BenchmarkSetup/gunshu$k" "$unit" "$S") - $g0) / $k / $scale")
		p=$(calc "($(median "BenchmarkSetup/gunshu${k}p" "$unit" "$S") - $p0) / $k / $scale")
		w=$(calc "($(median "BenchmarkSetup/gunshu${k}w" "$unit" "$S") - $p0) / $k / $scale")
		printf '  %s per hop, %d hops: splice %7s  gunshu %7s (%sx)  gunshu-p %7s (%sx)  gunshu-w %7s (%sx)\n' "$label" "$k" "$s" "$g" "$(ratio "$g" "$s")" "$p" "$(ratio "$p" "$s")" "$w" "$(ratio "$w" "$s")"
	done
done

echo
echo "== one idle relayed session, measured in the relay's own process (1,000 sessions) =="
for r in gunshu splice; do
	printf '  %-7s heap+stack %6.0f B (heap %5.0f, stacks %5.0f)  RSS %6.0f B  fds %s  goroutines %s\n' "$r" \
		"$(median "BenchmarkIdleSessions/$r" heap+stack-B/session "$I")" \
		"$(median "BenchmarkIdleSessions/$r" heap-B/session "$I")" \
		"$(median "BenchmarkIdleSessions/$r" stack-B/session "$I")" \
		"$(median "BenchmarkIdleSessions/$r" rss-B/session "$I")" \
		"$(median "BenchmarkIdleSessions/$r" fds/session "$I")" \
		"$(median "BenchmarkIdleSessions/$r" goroutines/session "$I")"
done
printf '  gunshu heap+stack vs the 12 KiB target: %sx; vs the splice relay: %sx\n' \
	"$(ratio "$(median BenchmarkIdleSessions/gunshu heap+stack-B/session "$I")" 12288)" \
	"$(ratio "$(median BenchmarkIdleSessions/gunshu heap+stack-B/session "$I")" "$(median BenchmarkIdleSessions/splice heap+stack-B/session "$I")")"

echo
echo "== peak memory per relayed session: 300 sessions x 64 KiB echo, 3 relay processes, (VmHWM after - VmRSS before) / 900 =="
ps=$(median BenchmarkPeakMemory/splice KiB/session "$P")
pg=$(median BenchmarkPeakMemory/gunshu KiB/session "$P")
printf '  splice %s KiB, gunshu %s KiB (%sx the splice relay; target 16 KiB)\n' "$ps" "$pg" "$(ratio "$pg" "$ps")"
printf '  one-relay routes: splice %s KiB, gunshu %s KiB, a Caddy gunshu_relay process %s KiB\n' \
	"$(median BenchmarkPeakMemory/splice1 KiB/session "$P")" "$(median BenchmarkPeakMemory/gunshu1 KiB/session "$P")" \
	"$(median BenchmarkPeakMemory/caddy1 KiB/session "$P")"

if [ "$CAPACITY" = 1 ]; then
	echo
	echo "== one relay process under the open-file limit ($(ulimit -Hn)) =="
	printf '  sessions held %s of 10000 (fds/session %s, relay fds at the end %s, heap+stack/session %s B)\n' \
		"$(median BenchmarkCapacity sessions "$C")" "$(median BenchmarkCapacity fds/session "$C")" \
		"$(median BenchmarkCapacity relay-fds "$C")" "$(median BenchmarkCapacity heap+stack-B/session "$C")"
fi
