#!/usr/bin/env bash
# CI fuzz smoke: build every cargo-fuzz target with nightly and run each for a short time
# over its committed seed corpus. Fails on any crash, panic, timeout or out-of-memory.
# Skips (exit 0) with a loud message when no nightly toolchain is available, because
# cargo-fuzz needs nightly for the sanitizer flags.
#
#   fuzz/smoke.sh                  # 20 s per target
#   FUZZ_SECONDS=5 fuzz/smoke.sh   # shorter
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-20}"

loud_skip() {
    echo "############################################################################"
    echo "## SKIPPED: fuzz smoke test — $1"
    echo "############################################################################"
    exit 0
}

command -v cargo >/dev/null 2>&1 || loud_skip "cargo is not installed"
cargo +nightly --version >/dev/null 2>&1 || loud_skip "no nightly toolchain (rustup toolchain install nightly)"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

targets=$(cargo +nightly fuzz list)
[ -n "$targets" ] || { echo "fuzz smoke: no fuzz targets found" >&2; exit 1; }

echo "fuzz smoke: building every target"
cargo +nightly fuzz build

# libFuzzer adds what it finds to the corpus directory it is given; run over a scratch copy
# of the seeds so a CI run leaves the checkout as it was.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

failed=()
for t in $targets; do
    mkdir -p "$scratch/$t"
    if [ -d "corpus/$t" ]; then
        find "corpus/$t" -maxdepth 1 -type f -name 'seed-*' -exec cp {} "$scratch/$t/" \;
    fi
    echo "fuzz smoke: $t for ${seconds}s ($(ls "$scratch/$t" | wc -l) seeds)"
    log="$scratch/$t.log"
    if cargo +nightly fuzz run "$t" "$scratch/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
        grep -E '^Done [0-9]+ runs' "$log" || tail -n 1 "$log"
    else
        echo "fuzz smoke: $t FAILED; the end of its log:" >&2
        tail -n 40 "$log" >&2
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz smoke: FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/; see fuzz/README.md)" >&2
    exit 1
fi
echo "fuzz smoke: every target ran ${seconds}s without a crash"
