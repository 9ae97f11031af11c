#!/usr/bin/env bash
# Installs the emulators the gs:// and az:// tests (pqwrap-cli/tests/rewrap_cloud.rs) run against:
# - Azurite, Microsoft's Azure Storage emulator, from npm, pinned by the lockfile in
#   pqwrap-cli/tests/azurite (its node_modules stay out of git); the tests start
#   pqwrap-cli/tests/azurite/node_modules/.bin/azurite-blob (or $PQWRAP_AZURITE);
# - gcp-storage-emulator from PyPI, into a virtual environment at target/tools/gcs-emulator
#   (or $PQWRAP_TOOLS/gcs-emulator); the tests start its bin/gcp-storage-emulator (or
#   $PQWRAP_GCS_EMULATOR).
# Without one of them, its tests print a SKIPPED banner. Idempotent: an emulator already at
# the pinned version is left as it is. Each is tried even if the other fails; the exit status
# says whether both are there.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0

azurite_dir=pqwrap-cli/tests/azurite
azurite_version=$(sed -n 's/.*"azurite": *"\([^"]*\)".*/\1/p' "$azurite_dir/package.json")
installed=$(cat "$azurite_dir/node_modules/azurite/package.json" 2>/dev/null \
    | sed -n 's/^  "version": *"\([^"]*\)".*/\1/p')
if [ -x "$azurite_dir/node_modules/.bin/azurite-blob" ] && [ "$installed" = "$azurite_version" ]; then
    :
elif ! command -v npm >/dev/null 2>&1; then
    echo "install-cloud-emulators: no npm to install Azurite with" >&2
    status=1
# `npm ci` installs exactly the lockfile's tree. Azurite 3.37 declares node >= 22 but runs on
# Debian's node 20 for the blob service the tests use; npm only warns about the engine.
elif ! npm ci --prefix "$azurite_dir" --no-audit --no-fund --loglevel=error; then
    echo "install-cloud-emulators: npm could not install Azurite $azurite_version" >&2
    status=1
fi

tools="${PQWRAP_TOOLS:-$PWD/target/tools}"
gcs_dir="$tools/gcs-emulator"
gcs_version="2026.7.19"
gcs_installed=$("$gcs_dir/bin/python" -m pip show gcp-storage-emulator 2>/dev/null | sed -n 's/^Version: //p')
if [ -x "$gcs_dir/bin/gcp-storage-emulator" ] && [ "$gcs_installed" = "$gcs_version" ]; then
    :
else
    python=$(command -v python3 || command -v python || true)
    if [ -z "$python" ]; then
        echo "install-cloud-emulators: no python3 to run pip with" >&2
        status=1
    else
        mkdir -p "$tools"
        rm -rf "$gcs_dir"
        # A virtual environment keeps the emulator and its dependency (google-crc32c) out of
        # the system's site-packages; unlike SeaweedFS's wheel it is Python code, so it needs
        # a venv (Debian: the python3-venv package).
        if ! { "$python" -m venv "$gcs_dir" >/dev/null 2>&1 && [ -x "$gcs_dir/bin/pip" ]; }; then
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
                apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            fi
            rm -rf "$gcs_dir"
            "$python" -m venv "$gcs_dir" >/dev/null 2>&1 || true
        fi
        if [ -x "$gcs_dir/bin/pip" ] \
            && "$gcs_dir/bin/pip" install --quiet --disable-pip-version-check "gcp-storage-emulator==$gcs_version"; then
            :
        else
            echo "install-cloud-emulators: could not install gcp-storage-emulator $gcs_version" >&2
            rm -rf "$gcs_dir"
            status=1
        fi
    fi
fi
exit $status
