#!/bin/sh
# Used by the Dockerfile's builder stages only:  sh install.sh LOCKFILE
#
# Installs a hashed lock (requirements/lock.sh) into /opt/venv from wheels.
# Every pinned package had a wheel for Python 3.11-3.14 on manylinux and
# musllinux, amd64 and arm64, when the lock was made (requirements/lock.sh --check).
# Should one be missing on Alpine (a new Python, a new architecture), the C and
# Rust toolchains are added to this builder stage, never to the runtime image,
# and the package is built from its sdist, whose hash is in the lock as well (openssl-dev:
# cryptography and aioquic link OpenSSL).
set -eu
lock=$1
install="/opt/venv/bin/python -m pip install --require-hashes --no-deps"

if $install --only-binary=:all: -r "$lock"; then
    :
elif command -v apk >/dev/null 2>&1; then
    echo "install.sh: a package of $lock has no wheel here; building it (builder stage only)" >&2
    apk add --no-cache build-base linux-headers libffi-dev openssl-dev cargo
    $install -r "$lock"
else
    echo "install.sh: a package of $lock has no wheel for this platform" >&2
    exit 1
fi
/opt/venv/bin/python -m pip check
