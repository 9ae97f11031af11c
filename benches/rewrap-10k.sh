#!/bin/bash
# Usage: benches/rewrap-10k.sh DIR [RUNS] [PAUSE]
#
# The 10,000-file re-wrap benchmark of BENCHMARKS.md, run in DIR (put DIR on the filesystem
# to measure: a tmpfs, a loop-mounted ext4, the disk). Builds, once, 10,000 files of 4 KiB in
# 50 directories encrypted with Debian's age to an X25519 key, then times in one hyperfine
# run `pqwrap rewrap -j 2` to a fresh post-quantum key against the shell loop users run today
# (`benches/rewrap-age-loop.sh`: `age -d | age -e` per file). Each timed run starts from a
# fresh copy of the pristine archive; PAUSE seconds (default 0) of sleep after the copy are
# not timed (ext4 without a journal skips inodes freed in the last 60 s on every create, so
# back-to-back runs that delete 10,000 files measure that scan; see BENCHMARKS.md).
#
# BEFORE=/path/to/an/older/pqwrap adds that binary to the same hyperfine run (a before/after
# figure for a change to the job). LOOP=0 leaves the (slow: ~1 min a run) shell loop out.
# PQ=1 also times a post-quantum rotation: the archive re-wrapped to new.pub once (not
# timed), then re-wrapped from new.txt to a third key, newer.pub.
#
# Needs: age, age-keygen, hyperfine, and `cargo build --release -p pqwrap-cli`.
set -euo pipefail
DIR=${1:?usage: rewrap-10k.sh DIR [RUNS] [PAUSE]}
RUNS=${2:-3}
PAUSE=${3:-0}
HERE=$(cd "$(dirname "$0")" && pwd)
P=$(cd "$HERE/.." && pwd)/target/release/pqwrap
[ -x "$P" ] || { echo "build first: cargo build --release -p pqwrap-cli" >&2; exit 2; }
mkdir -p "$DIR"
cd "$DIR"
if [ ! -d pristine ]; then
    age-keygen -o old.txt 2>/dev/null
    age-keygen -y old.txt > old.pub
    "$P" keygen -o new.txt 2>/dev/null
    "$P" keygen -y new.txt > new.pub
    rm -rf plain && mkdir plain
    for i in $(seq 0 9999); do
        mkdir -p "plain/d$((i % 50))"
        head -c 4096 /dev/urandom > "plain/d$((i % 50))/f$i"
    done
    (cd plain && find . -type f | xargs -P2 -I{} sh -c \
        'mkdir -p ../pristine/$(dirname {}) && age -e -r $(cat ../old.pub) -o ../pristine/{}.age {}')
fi
CMDS=("$P rewrap -j 2 -i old.txt -R new.pub work")
if [ -n "${BEFORE:-}" ]; then
    CMDS+=("$BEFORE rewrap -j 2 -i old.txt -R new.pub work")
fi
if [ "${LOOP:-1}" != 0 ]; then
    CMDS+=("$HERE/rewrap-age-loop.sh work")
fi
hyperfine --runs "$RUNS" --export-json rewrap-10k.json \
    --prepare "rm -rf work && cp -a pristine work && sync && sleep $PAUSE" \
    "${CMDS[@]}"
if [ "${PQ:-0}" = 1 ]; then
    if [ ! -d pristine-pq ]; then
        "$P" keygen -o newer.txt 2>/dev/null
        "$P" keygen -y newer.txt > newer.pub
        rm -rf pristine-pq && cp -a pristine pristine-pq
        "$P" rewrap -j 2 -i old.txt -R new.pub pristine-pq > /dev/null
    fi
    PQCMDS=("$P rewrap -j 2 -i new.txt -R newer.pub work")
    if [ -n "${BEFORE:-}" ]; then
        PQCMDS+=("$BEFORE rewrap -j 2 -i new.txt -R newer.pub work")
    fi
    hyperfine --runs "$RUNS" --export-json rewrap-10k-pq.json \
        --prepare "rm -rf work && cp -a pristine-pq work && sync && sleep $PAUSE" \
        "${PQCMDS[@]}"
fi
LOOP=${LOOP:-1} PQ=${PQ:-0} BEFORE=${BEFORE:-} python3 - <<'EOF'
import json, os
for name in ["rewrap-10k.json", "rewrap-10k-pq.json"]:
    if not os.path.exists(name) or (name.endswith("pq.json") and os.environ.get("PQ", "0") != "1"):
        continue
    r = json.load(open(name))["results"]
    med = [x["median"] for x in r]
    print(name)
    for x in r:
        cpu = x["user"] + x["system"]
        print(f'  {x["command"][:60]:60} median {x["median"]:8.3f} s  {10000 / x["median"]:8.0f} files/s'
              f'  CPU {cpu:6.3f} s = {cpu / 10000 * 1e6:6.1f} us/file (mean user {x["user"]:.3f} + sys {x["system"]:.3f})')
    if os.environ["BEFORE"]:
        print(f"  speed-up over BEFORE (medians): {med[1] / med[0]:.2f}x")
    if name == "rewrap-10k.json" and os.environ["LOOP"] != "0":
        print(f"  speed-up over the loop (medians): {med[-1] / med[0]:.1f}x")
EOF
