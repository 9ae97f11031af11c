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
# figure for a change to the job).
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
CMDS+=("$HERE/rewrap-age-loop.sh work")
hyperfine --runs "$RUNS" --export-json rewrap-10k.json \
    --prepare "rm -rf work && cp -a pristine work && sync && sleep $PAUSE" \
    "${CMDS[@]}"
python3 - <<'EOF'
import json
r = json.load(open("rewrap-10k.json"))["results"]
med = [x["median"] for x in r]
for x in r:
    print(f'{x["command"][:60]:60} median {x["median"]:8.3f} s  {10000 / x["median"]:8.0f} files/s')
print(f"speed-up over the loop (medians): {med[-1] / med[0]:.1f}x")
if len(med) == 3:
    print(f"speed-up over BEFORE (medians): {med[1] / med[0]:.2f}x")
EOF
