#!/bin/bash
# Usage: benches/rewrap-s3.sh DIR [RUNS] [PARTS]
#
# The object-store benchmarks of BENCHMARKS.md, whole-process with hyperfine, against a real
# S3 server on loopback (SeaweedFS `weed mini`, from .ci/install-seaweedfs.sh):
#   small   5,000 age X25519 objects of 4 KiB, `pqwrap rewrap -j 1, 8, 32, 128`;
#   shards  the same objects re-wrapped by 1, 2 and 4 `--shard K/N` processes at once (-j 32
#           each);
#   big     one 1 GiB age object: `pqwrap rewrap` against the client loop users would run
#           (download with curl, `pqwrap decrypt | pqwrap encrypt` to the new key, upload with
#           curl), and against one plain download of the object.
# PARTS (default "small shards big") picks which. Every timed run starts from the original
# objects: hyperfine's --prepare (not timed) restarts the server on a copy of a snapshot of
# its data taken after the originals were uploaded.
#
# Needs: age, age-keygen, curl (with --aws-sigv4), hyperfine, python3,
# `cargo build --release -p pqwrap-cli`, `.ci/install-seaweedfs.sh`.
set -euo pipefail
DIR=${1:?usage: rewrap-s3.sh DIR [RUNS] [PARTS]}
RUNS=${2:-3}
PARTS=${3:-small shards big}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
P=$ROOT/target/release/pqwrap
WEED=${PQWRAP_WEED:-$ROOT/target/tools/seaweedfs/bin/weed}
[ -x "$P" ] || { echo "build first: cargo build --release -p pqwrap-cli" >&2; exit 2; }
[ -x "$WEED" ] || { echo "install SeaweedFS first: .ci/install-seaweedfs.sh" >&2; exit 2; }
mkdir -p "$DIR"
cd "$DIR"

export AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_ALLOW_HTTP=true
read -r -a PORTS < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(14)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
S3=${PORTS[0]}
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3

# curl signs S3 requests itself: an independent client for uploads and the baseline.
cat > s3curl <<EOF
#!/bin/sh
exec curl -sS --fail --aws-sigv4 aws:amz:us-east-1:s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "\$@"
EOF
chmod +x s3curl

# weed.sh start [SNAPSHOT] | stop | snapshot NAME: the server, detached, on the ports above.
cat > weed.sh <<EOF
#!/bin/bash
set -e
cd "$PWD"
stop() {
    if [ -f weed.pid ]; then
        kill \$(cat weed.pid) 2>/dev/null || true
        while kill -0 \$(cat weed.pid) 2>/dev/null; do sleep 0.1; done
        rm -f weed.pid
    fi
}
case "\$1" in
stop) stop ;;
snapshot)
    echo ready > ready.txt && ./s3curl -T ready.txt "$AWS_ENDPOINT_URL/bench/ready" >/dev/null
    stop; rm -rf "\$2"; cp -a weed-data "\$2" ;;
start)
    stop
    if [ -n "\${2:-}" ]; then rm -rf weed-data && cp -a "\$2" weed-data; fi
    mkdir -p weed-data
    setsid "$WEED" mini -dir=weed-data -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \\
        -admin.ui=false -s3.port=$S3 -master.port=${PORTS[1]} -volume.port=${PORTS[2]} \\
        -filer.port=${PORTS[3]} -webdav.port=${PORTS[4]} -admin.port=${PORTS[5]} \\
        -s3.port.iceberg=${PORTS[6]} -s3.port.lance=${PORTS[7]} -master.port.grpc=${PORTS[8]} \\
        -volume.port.grpc=${PORTS[9]} -filer.port.grpc=${PORTS[10]} \\
        -admin.port.grpc=${PORTS[11]} -s3.port.grpc=${PORTS[12]} -metricsPort=${PORTS[13]} \\
        </dev/null >>weed.log 2>&1 &
    echo \$! > weed.pid
    for _ in \$(seq 1 300); do
        code=\$(./s3curl -o /dev/null -w '%{http_code}' -X PUT "$AWS_ENDPOINT_URL/bench" 2>/dev/null || true)
        case "\$code" in 200|409) break ;; esac
        sleep 0.2
    done
    # A snapshot's objects are served once the volume server has registered again: wait for
    # its probe object.
    [ -z "\${2:-}" ] && exit 0
    for _ in \$(seq 1 300); do
        ./s3curl -o /dev/null "$AWS_ENDPOINT_URL/bench/ready" 2>/dev/null && exit 0
        sleep 0.2
    done
    echo "the server did not start" >&2; exit 1 ;;
esac
EOF
chmod +x weed.sh
trap './weed.sh stop' EXIT

if [ ! -f old.txt ]; then
    age-keygen -o old.txt 2>/dev/null
    age-keygen -y old.txt > old.pub
    "$P" keygen -o new.txt 2>/dev/null
    "$P" keygen -y new.txt > new.pub
fi
chmod 600 old.txt new.txt

# upload.sh PREFIX DIR: every file of DIR as PREFIX/name, 32 at a time.
cat > upload.sh <<EOF
#!/bin/sh
cd "\$2" && ls | xargs -P 32 -I{} $PWD/s3curl -T {} "$AWS_ENDPOINT_URL/bench/\$1/{}" >/dev/null
EOF
chmod +x upload.sh

report() {
    python3 - "$@" <<'PY'
import json, sys
n = int(sys.argv[2])
for x in json.load(open(sys.argv[1]))["results"]:
    print(f'{x["command"][:90]:90} median {x["median"]:8.3f} s  {n / x["median"]:9.1f} objects/s')
PY
}

if [[ " $PARTS " == *" small "* || " $PARTS " == *" shards "* ]]; then
    if [ ! -d snap-small ]; then
        rm -rf plain small && mkdir plain small
        for i in $(seq 0 4999); do head -c 4096 /dev/urandom > "plain/f$i"; done
        (cd plain && ls | xargs -P2 -I{} age -e -r "$(cat ../old.pub)" -o ../small/{}.age {})
        rm -rf weed-data
        ./weed.sh start
        ./upload.sh small small
        ./weed.sh snapshot snap-small
    fi
fi

if [[ " $PARTS " == *" small "* ]]; then
    CMDS=()
    for j in 1 8 32 128; do
        CMDS+=("$P rewrap -j $j -i old.txt -R new.pub s3://bench/small/")
    done
    hyperfine --runs "$RUNS" --export-json s3-small.json \
        --prepare "./weed.sh start snap-small" "${CMDS[@]}"
    report s3-small.json 5000
fi

if [[ " $PARTS " == *" shards "* ]]; then
    CMDS=()
    for n in 1 2 4; do
        CMDS+=("bash -c 'for k in \$(seq 0 $((n - 1))); do $P rewrap -j 32 --shard \$k/$n -i old.txt -R new.pub s3://bench/small/ 2>/dev/null & done; wait'")
    done
    hyperfine --runs "$RUNS" --export-json s3-shards.json \
        --prepare "./weed.sh start snap-small" "${CMDS[@]}"
    report s3-shards.json 5000
fi

if [[ " $PARTS " == *" big "* ]]; then
    if [ ! -d snap-big ]; then
        rm -rf big && mkdir big
        head -c 1073741824 /dev/urandom | age -e -r "$(cat old.pub)" -o big/big.age
        rm -rf weed-data
        ./weed.sh start
        ./upload.sh big big
        ./weed.sh snapshot snap-big
        rm -rf big
    fi
    # The client loop: download, re-encrypt to the new key, upload.
    cat > loop.sh <<EOF
#!/bin/sh
set -e
$PWD/s3curl -o loop.in "$AWS_ENDPOINT_URL/bench/big/big.age"
"$P" decrypt -i old.txt loop.in | "$P" encrypt -R new.pub -o loop.out
$PWD/s3curl -T loop.out "$AWS_ENDPOINT_URL/bench/big/big.age" >/dev/null
rm -f loop.in loop.out
EOF
    chmod +x loop.sh
    hyperfine --runs "$RUNS" --export-json s3-big.json \
        --prepare "./weed.sh start snap-big" \
        "$P rewrap -j 1 -i old.txt -R new.pub s3://bench/big/" \
        "./loop.sh" \
        "$PWD/s3curl -o /dev/null $AWS_ENDPOINT_URL/bench/big/big.age"
    report s3-big.json 1
    # The bytes a pqwrap run moved, from its report.
    ./weed.sh start snap-big
    rm -f big-report.jsonl
    "$P" rewrap -j 1 -i old.txt -R new.pub --report big-report.jsonl s3://bench/big/ 2>/dev/null
    python3 -c '
import json
r = [json.loads(l) for l in open("big-report.jsonl")]
print("pqwrap moved", r[0]["transferred"], "bytes for a", r[0]["bytes"], "byte object")'
fi
