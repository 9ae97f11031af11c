#!/bin/bash
# Usage: benches/rewrap-s3-floor.sh DIR [RUNS] [PART_MIB/AT_ONCE ...]
#
# Where the time of the 1 GiB re-wrap goes on the S3 server: in DIR, made by
# `benches/rewrap-s3.sh DIR RUNS big` (its server scripts and data snapshot), one hyperfine
# run times, each from the original object (--prepare restarts the server on the snapshot):
#   - `pqwrap rewrap -j 1` of the object (as in rewrap-s3.sh);
#   - the server's own floor: the same object replaced by server-side ranged copies of itself
#     alone (`s3_copy_floor`: CreateMultipartUpload, UploadPartCopy of every part, Complete),
#     once per PART_MIB/AT_ONCE given (default: the store's own constants);
#   - one whole-object server-side CopyObject to a new key (signed by curl);
#   - one plain download (`curl -o /dev/null`).
# Then one more run of pqwrap, of the floor and of the download, each watched by benches/cpu-during.py: the
# CPU seconds of the client and of the server, the server's disk traffic, the machine's
# idle share.
#
# Needs: hyperfine, python3, curl (with --aws-sigv4), and
# `cargo build --release -p pqwrap-cli -p pqwrap-rewrap --features pqwrap-rewrap/s3 --example s3_copy_floor`.
set -euo pipefail
DIR=${1:?usage: rewrap-s3-floor.sh DIR [RUNS] [PART_MIB/AT_ONCE ...]}
RUNS=${2:-3}
shift $(($# < 2 ? $# : 2))
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
P=$ROOT/target/release/pqwrap
F=$ROOT/target/release/examples/s3_copy_floor
for x in "$P" "$F"; do
    [ -x "$x" ] || { echo "build first: $x is missing" >&2; exit 2; }
done
cd "$DIR"
[ -x weed.sh ] && [ -d snap-big ] || { echo "$DIR: run benches/rewrap-s3.sh $DIR 1 big first" >&2; exit 2; }

export AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_ALLOW_HTTP=true
AWS_ENDPOINT_URL=$(grep -o 'http://127.0.0.1:[0-9]*' s3curl weed.sh | head -1 | cut -d: -f2-)
export AWS_ENDPOINT_URL
trap './weed.sh stop' EXIT
OBJ=s3://bench/big/big.age

CMDS=("$P rewrap -j 1 -i old.txt -R new.pub s3://bench/big/")
if [ $# -eq 0 ]; then
    CMDS+=("$F $OBJ")
else
    for c in "$@"; do CMDS+=("$F $OBJ ${c%/*} ${c#*/}"); done
fi
CMDS+=("./s3curl -o /dev/null -X PUT -H 'x-amz-copy-source: /bench/big/big.age' $AWS_ENDPOINT_URL/bench/big/copy.age"
    "./s3curl -o /dev/null $AWS_ENDPOINT_URL/bench/big/big.age")
hyperfine --runs "$RUNS" --export-json s3-floor.json --prepare "./weed.sh start snap-big" "${CMDS[@]}"
python3 - <<'PY'
import json
for x in json.load(open("s3-floor.json"))["results"]:
    t = sorted(x["times"])
    print(f'{x["command"][-90:]:90} median {x["median"]:7.2f} s  (min {t[0]:.2f}, max {t[-1]:.2f})')
PY

for c in "$P rewrap -j 1 -i old.txt -R new.pub s3://bench/big/" "$F $OBJ" \
    "./s3curl -o /dev/null $AWS_ENDPOINT_URL/bench/big/big.age"; do
    ./weed.sh start snap-big
    echo "watched: $c"
    # shellcheck disable=SC2086
    python3 "$HERE/cpu-during.py" "$(cat weed.pid)" $c >/dev/null 2>cpu.txt || { cat cpu.txt; exit 1; }
    tail -1 cpu.txt
done
