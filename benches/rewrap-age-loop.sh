#!/bin/bash
# Usage: rewrap-age-loop.sh DIR (with old.txt, old.pub in the current directory).
# What users do today: one decrypt and one encrypt process per file (Debian's age 1.1.1
# cannot encrypt to post-quantum recipients, so it re-encrypts to an X25519 recipient).
R=$(cat old.pub)
find "${1:-work}" -type f -name '*.age' | while read -r f; do
    age -d -i old.txt "$f" | age -e -r "$R" -o "$f.new" && mv "$f.new" "$f"
done
