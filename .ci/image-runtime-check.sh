#!/usr/bin/env bash
# No container engine runs on the project's machines, so the Dockerfile's runtime stage is
# reproduced as closely as a chroot can: the release binary, only the shared libraries that
# distroless/cc-debian12 ships and the binary needs (copied from this Debian 12 host), an
# /etc/passwd with distroless's nonroot user, a read-only root, the identity secret mounted
# read-only at /run/secrets/pqwrap/ with the mode Kubernetes gives it under fsGroup (0440,
# group 65532), and /data writable. As uid 65532 it re-wraps a classical archive there; the
# files are then decrypted with the new key and compared. Needs root (mount namespace and
# chroot). Not part of .ci/run: it is a release build of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p pqwrap-cli
bin=$PWD/target/release/pqwrap
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root secrets=$work/secrets data=$work/data
mkdir -p "$root"/{usr/local/bin,etc,data,run/secrets/pqwrap,lib64} "$secrets" "$data"
chmod 0755 "$work" "$root"
install -m 0755 "$bin" "$root/usr/local/bin/pqwrap"
# Every library the binary asks for must be one that distroless/cc has (glibc, libgcc).
for lib in $(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
    case $lib in
        libc.so.6 | libm.so.6 | libgcc_s.so.1) ;;
        *) echo "FAIL: needs $lib, which distroless/cc does not ship" >&2; exit 1 ;;
    esac
    src=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ { print $NF; exit }')
    install -D -m 0644 "$(readlink -f "$src")" "$root/lib/x86_64-linux-gnu/$lib"
done
install -m 0755 "$(readlink -f /lib64/ld-linux-x86-64.so.2)" "$root/lib64/ld-linux-x86-64.so.2"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    >"$root/etc/passwd"

# The operator's side: an old classical identity, new post-quantum recipients, an archive.
"$bin" keygen --classical -o "$secrets/identity.txt" 2>/dev/null
"$bin" keygen -o "$work/new.txt" 2>/dev/null
"$bin" keygen -y "$work/new.txt" >"$secrets/recipients.txt"
chgrp 65532 "$secrets"/* && chmod 0440 "$secrets"/*
old=$("$bin" keygen -y "$secrets/identity.txt")
for i in 1 2 3; do
    head -c 200000 /dev/urandom >"$work/plain$i"
    "$bin" encrypt -r "$old" -o "$data/f$i.age" "$work/plain$i"
done
chown -R 65532:65532 "$data"

unshare --mount --propagation private bash -euo pipefail -c '
    root=$1 secrets=$2 data=$3
    mount --bind "$root" "$root" && mount -o remount,bind,ro "$root"
    mount --bind "$secrets" "$root/run/secrets/pqwrap"
    mount -o remount,bind,ro "$root/run/secrets/pqwrap"
    mount --bind "$data" "$root/data"
    in_image() { chroot --userspec=65532:65532 "$root" /usr/local/bin/pqwrap "$@"; }
    in_image --version | head -n1
    in_image rewrap -i /run/secrets/pqwrap/identity.txt -R /run/secrets/pqwrap/recipients.txt /data
    if in_image keygen -o /key.txt 2>/dev/null; then
        echo "FAIL: the root filesystem was writable" >&2
        exit 1
    fi
' bash "$root" "$secrets" "$data"

for i in 1 2 3; do
    "$bin" decrypt -i "$work/new.txt" "$data/f$i.age" | cmp - "$work/plain$i"
done
echo "image runtime: as uid 65532 on a read-only root with read-only secrets, rewrap passed"
