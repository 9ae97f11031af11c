#!/usr/bin/env bash
# Regenerates the project's own vectors (test-vectors/native/) from scratch and shows that
# the result is byte-identical to what is committed: exit 0 and "unchanged", or the diff
# (and any added or removed file) and exit 1.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet -p pqwrap-test-vectors --bin regen
status=0
git diff --exit-code --stat -- test-vectors/native || status=1
untracked=$(git status --porcelain --untracked-files=all -- test-vectors/native)
if [ -n "$untracked" ]; then
    echo "$untracked"
    status=1
fi
if [ "$status" -eq 0 ]; then
    echo "test-vectors/native: regenerated, unchanged ($(find test-vectors/native -name '*.json' | wc -l) files)"
else
    echo "test-vectors/native: the generator's output differs from the committed vectors" >&2
fi
exit "$status"
