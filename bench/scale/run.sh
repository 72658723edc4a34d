#!/usr/bin/env bash
# The scale bench: a network of 10,000 light relays on loopback addresses,
# 3 managers (Caddy) sharing one redis-server, churn, and entrances asking
# for the list. See bench/README.md, "A network of 10,000 relays".
#
#   bench/scale/run.sh                                        # this checkout
#   bench/scale/run.sh --tree /tmp/base --tree .              # side by side, the first is the baseline
#   bench/scale/run.sh --relays 2000 --duration 1m            # shorter
#   bench/scale/run.sh --help                                 # every option
#
# The bench is built from this checkout; each --tree supplies the managers'
# Caddy (go build ./examples/caddy in that tree). Needs redis-server on PATH
# and an open-file limit of 20,000 (the relays are spread over processes of
# at most --per-child relays each).
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$here" && go build -o "$work/scale" ./bench/scale)
"$work/scale" "$@"
