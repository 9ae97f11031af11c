#!/usr/bin/env bash
# Builds the fully static Linux binary (x86_64-unknown-linux-musl) and runs it inside an
# empty chroot, one that holds nothing but the binary (no glibc, no loader, no /proc, no
# /dev), through keygen, encrypt, decrypt, scan and rewrap, as root and as an unprivileged
# user. Needs root (for chroot), the musl target (`rustup target add
# x86_64-unknown-linux-musl`) and musl-gcc (Debian's musl-tools), both installed here when
# missing. Not part of .ci/run: it is a release
# build of its own, about 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl

if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi
# AWS-LC (X25519) is C, built by the cc crate: for musl it needs a musl C compiler, which
# Debian's musl-tools provides as musl-gcc.
if ! command -v musl-gcc >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq musl-tools >/dev/null 2>&1 \
        || (apt-get update -qq && apt-get install -y -qq musl-tools >/dev/null)
fi
export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}
cargo build --release --locked --target "$target" -p pqwrap-cli
bin=target/$target/release/pqwrap
if readelf -l "$bin" | grep -q 'program interpreter'; then
    echo "FAIL: $bin asks for a program interpreter (dynamically linked)" >&2
    exit 1
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
install -m 0755 "$bin" "$root/pqwrap"
mkdir -m 0777 "$root/work"
mkdir "$root/work/archive"
as_root() { chroot "$root" /pqwrap "$@"; }
as_user() { chroot --userspec=65532:65532 "$root" /pqwrap "$@"; }
# keygen -o prints the public key on stderr: shown only if it fails.
quiet() { "$@" 2>"$root/err" || { cat "$root/err" >&2; return 1; }; }
echo "chroot contents: $(cd "$root" && find . -mindepth 1 | sort | tr '\n' ' ')"

as_root --version
head -c 300000 /dev/urandom >"$root/work/plain"
# The archive as it is today: age files for a classical X25519 key, a native file for an
# older post-quantum key (the native format takes no classical recipients).
quiet as_root keygen --classical -o /work/old.txt
quiet as_root keygen -o /work/old-pq.txt
old=$(as_root keygen -y /work/old.txt)
old_pq=$(as_root keygen -y /work/old-pq.txt)
as_root encrypt -r "$old" -o /work/archive/a.age /work/plain
as_root encrypt -a -r "$old" -o /work/archive/b.age /work/plain
as_root encrypt --format pqwrap -r "$old_pq" -o /work/archive/c.pqw /work/plain
as_root scan /work/archive

quiet as_root keygen -o /work/new.txt
new=$(as_root keygen -y /work/new.txt)
as_root rewrap -i /work/old.txt -i /work/old-pq.txt -r "$new" /work/archive
as_root scan /work/archive
for f in a.age b.age c.pqw; do
    as_root decrypt -i /work/new.txt -o "/work/$f.out" "/work/archive/$f"
    cmp "$root/work/plain" "$root/work/$f.out"
done

# Unprivileged (distroless's nonroot uid/gid): a round trip of its own.
quiet as_user keygen -o /work/user.txt
user=$(as_user keygen -y /work/user.txt)
as_user encrypt -r "$user" -o /work/user.age /work/plain
as_user decrypt -i /work/user.txt -o /work/user.out /work/user.age
cmp "$root/work/plain" "$root/work/user.out"
echo "static binary: keygen, encrypt, decrypt, scan and rewrap passed in an empty chroot"
