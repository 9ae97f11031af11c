#!/bin/bash
# Usage: benches/rewrap-azure.sh DIR [RUNS] [OBJECTS]
#
# The az:// figures of BENCHMARKS.md, whole-process with hyperfine, against Azurite (the
# Azure Storage emulator, npm `azurite@3.37.0`) on loopback: OBJECTS (default 1,000) age
# X25519 objects of 4 KiB, `pqwrap rewrap -j 1, 8, 32`. Every timed run starts from the
# original objects: hyperfine's --prepare (not timed) deletes the container and uploads them
# again with Azure's own Python SDK (an independent client).
#
# Needs: hyperfine, node with npm, python3 with venv, `cargo build --release -p pqwrap-cli`.
# Installs azurite and azure-storage-blob under DIR.
set -euo pipefail
DIR=${1:?usage: rewrap-azure.sh DIR [RUNS] [OBJECTS]}
RUNS=${2:-3}
OBJECTS=${3:-1000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
P=$ROOT/target/release/pqwrap
[ -x "$P" ] || { echo "build first: cargo build --release -p pqwrap-cli" >&2; exit 2; }
mkdir -p "$DIR"
cd "$DIR"
[ -x node_modules/.bin/azurite-blob ] || npm i --no-audit --no-fund --loglevel=error azurite@3.37.0
[ -x venv/bin/python ] || { python3 -m venv venv && venv/bin/pip install -q azure-storage-blob==12.*; }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rm -rf data && mkdir data
node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort "$PORT" --location data \
    --silent --skipApiVersionCheck >azurite.log 2>&1 &
AZ=$!
trap 'kill $AZ 2>/dev/null || true' EXIT
export AZURE_STORAGE_USE_EMULATOR=true AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:$PORT

# Azurite's documented development account and key.
cat > upload.py <<EOF
import sys, time
from concurrent.futures import ThreadPoolExecutor
from azure.storage.blob import BlobServiceClient
conn = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        "BlobEndpoint=http://localhost:$PORT/devstoreaccount1;")
c = BlobServiceClient.from_connection_string(conn).get_container_client("bench")
try:
    c.delete_container()
except Exception:
    pass
for _ in range(100):
    try:
        c.create_container()
        break
    except Exception:
        time.sleep(0.2)
body = open(sys.argv[1], "rb").read()
with ThreadPoolExecutor(16) as ex:
    list(ex.map(lambda i: c.upload_blob(f"small/{i:05d}.age", body, overwrite=True),
                range(int(sys.argv[2]))))
EOF

rm -f old.key new.key both.key small.age
"$P" keygen --classical -o old.key 2>/dev/null
"$P" keygen -o new.key 2>/dev/null
"$P" keygen -y new.key > new.pub
"$P" keygen -y old.key > old.pub
head -c 4096 /dev/urandom > plain.bin
"$P" encrypt -R old.pub -o small.age plain.bin
cat old.key new.key > both.key && chmod 600 both.key

hyperfine --runs "$RUNS" --export-markdown azure-small.md --export-json azure-small.json \
    --prepare "venv/bin/python upload.py small.age $OBJECTS" \
    -n "pqwrap rewrap -j 1" "$P rewrap -j 1 -i both.key -R new.pub az://bench/small/" \
    -n "pqwrap rewrap -j 8" "$P rewrap -j 8 -i both.key -R new.pub az://bench/small/" \
    -n "pqwrap rewrap -j 32" "$P rewrap -j 32 -i both.key -R new.pub az://bench/small/"
# CPU of one default run (user + sys of pqwrap alone).
venv/bin/python upload.py small.age "$OBJECTS"
/usr/bin/time -f "pqwrap -j 32: %U s user, %S s sys, %M KiB max RSS" \
    "$P" rewrap -i both.key -R new.pub az://bench/small/ >/dev/null
