#!/usr/bin/env bash
# The WAN bench: time to first byte through Gunshu routes on emulated WAN
# links, in link round trips, against a direct link and a chain of minimal
# relays, plus headless Chromium page loads. See bench/README.md, "WAN model".
#
#   bench/wan/run.sh                                   # this checkout
#   bench/wan/run.sh --tree /work/main --tree /work/wt/speed   # side by side, the first is the baseline
#   bench/wan/run.sh --requests 40 --pages 2 --d 5ms   # shorter
#   bench/wan/run.sh --help                            # every option
#
# The bench itself is built from this checkout; each --tree only supplies
# the Caddy under test (go build ./examples/caddy in that tree). As root it
# runs at nice -10 (NICE=0 to turn off) so the link emulator keeps time on
# a busy machine; the Caddy processes and Chromium inherit it.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$here" && go build -o "$work/wan" ./bench/wan)

args=("$@")
have_tree=0
for a in "$@"; do
	case "$a" in -tree | --tree | -tree=* | --tree=*) have_tree=1 ;; esac
done
if [ "$have_tree" = 0 ]; then
	args=(--tree "$here" "${args[@]}")
fi

prefix=()
if [ "$(id -u)" = 0 ] && [ "${NICE:-1}" != 0 ]; then
	prefix=(nice -n -10)
fi
"${prefix[@]}" "$work/wan" "${args[@]}"
