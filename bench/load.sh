#!/bin/sh
# Load test: 10,000 concurrent checksummed sessions through 3 relay
# processes, as initiators route them (1 to 3 relays each), then 9,900
# through a fixed chain of all 3 relays (each relay then needs 2 fds per
# session, and the fd limit here is 20,000 per process). Each run is
# preceded by the same sessions straight to the responder, for ratios.
# Not part of `go test`: it takes about a minute and 20,000 fds per process.
set -eu
cd "$(dirname "$0")/.."
bin=$(mktemp -d)/load
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./bench/load
"$bin" -sessions "${SESSIONS:-10000}" -relays 3 -mode random "$@"
echo
"$bin" -sessions "${CHAIN_SESSIONS:-9900}" -relays 3 -mode chain "$@"
