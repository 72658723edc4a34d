#!/usr/bin/env bash
# Measures the attacks of issue #16 against Caddy built from an earlier
# tree (BASE, by default c1e6fa1, before #16) and from this tree, in one
# run, each with its own Caddyfile.example, and prints the figures of
# SECURITY.md's table as Markdown rows.
#
#   bench/security.sh               # about 2 minutes after the builds
#   BASE=main ROUNDS=5 bench/security.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-c1e6fa1}
ROUNDS=${ROUNDS:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir "$tmp/before"
git archive "$BASE" | tar -x -C "$tmp/before"
(cd "$tmp/before" && go build -o "$tmp/caddy-before" ./examples/caddy)
go build -o "$tmp/caddy-after" ./examples/caddy
echo "# before: $BASE ($(git rev-parse --short "$BASE")), after: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + uncommitted changes'); $(go version); $(nproc) CPUs"
go run ./bench/security -rounds "$ROUNDS" \
	-before "$tmp/caddy-before" -before-example "$tmp/before/Caddyfile.example" \
	-after "$tmp/caddy-after" -after-example Caddyfile.example
