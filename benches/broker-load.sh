#!/usr/bin/env bash
# Whole-process load on `pqwrap broker serve` (release build): CLIENTS concurrent clients
# make REQUESTS token requests for the design manifest, each on its own connection; the
# load generator prints latency percentiles and tokens/s, and an in-process signing
# baseline measured in the same run (pqwrap-broker/examples/load.rs).
#
#   benches/broker-load.sh [DIR] [CLIENTS] [REQUESTS] [RUNS]
#
# DIR (default: a new temporary directory) holds the broker's state, audit log and status
# list, so it decides which filesystem the journal and audit syncs hit.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-$(mktemp -d)}"
clients="${2:-50}"
requests="${3:-10000}"
runs="${4:-3}"

cargo build --release -p pqwrap-cli --bin pqwrap >&2
cargo build --release -p pqwrap-broker --example load >&2
bin=target/release/pqwrap
load=target/release/examples/load
mkdir -p "$dir"

# The documented policy, with the rate limit lifted for the benchmark (one client identity).
awk '/^```toml$/{f=1;next} f&&/^```$/{exit} f' docs/BROKER.md \
    | sed 's/^socket_mode = "0600"$/socket_mode = "0600"\nrate_limit = { requests = 1000000, per = "1s" }/' \
    > "$dir/policy.toml"
awk '/^pub const DESIGN_EXAMPLE: &str = r#"/{sub(/.*r#"/,"");f=1} f{ if (sub(/"#;.*/,"")) {print; exit} print }' \
    pqwrap-core/src/token/manifest.rs > "$dir/manifest.json"

for run in $(seq 1 "$runs"); do
    rm -rf "$dir/state" "$dir/broker.key" "$dir/status.cwt" "$dir/sock"
    "$bin" token keygen -o "$dir/broker.key" 2>/dev/null
    "$bin" broker serve --socket "$dir/sock" --key "$dir/broker.key" --policy "$dir/policy.toml" \
        --state "$dir/state" --status-list "$dir/status.cwt" --ocsf "$dir/state/ocsf.jsonl" \
        2>"$dir/serve.log" &
    pid=$!
    for _ in $(seq 1 200); do [ -S "$dir/sock" ] && break; sleep 0.05; done
    echo "run $run: $("$load" "$dir/sock" "$dir/manifest.json" files.local "$clients" "$requests")"
    kill "$pid"
    wait "$pid" || true
    "$bin" audit verify "$dir/state/audit.log" >&2
done
