#!/bin/bash
# Usage: rewrap-sops-loop.sh pqwrap|sops BINARY DIR (in the directory rewrap-sops-2k.sh made).
# One process per file, the shape of every per-file tool: `pqwrap rewrap FILE`, or
# `sops updatekeys -y FILE` with the creation rule in sops.yaml.
set -euo pipefail
tool=$1 bin=$2 dir=$3
for f in "$dir"/*.yaml; do
    case $tool in
    pqwrap) "$bin" rewrap -i old.txt -R new.pub "$f" 2>/dev/null ;;
    sops) SOPS_AGE_KEY_FILE=old.txt "$bin" --config sops.yaml updatekeys -y "$f" >/dev/null 2>&1 ;;
    esac
done
