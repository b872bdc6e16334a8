#!/usr/bin/env bash
# Regenerate the hashed locks used by the Dockerfile:
#   requirements/base.txt       <- base.in      (gunicorn, uvicorn[standard], uvicorn-worker, hypercorn,
#                                                granian[reload])
#   requirements/fastapi.txt    <- fastapi.in   (base + fastapi, constrained by base.txt)
#   requirements/starlette.txt  <- starlette.in (base + starlette, constrained by base.txt)
#
# Resolved with pip-tools on Python 3.11, the oldest Python of the image matrix:
# every environment marker in the dependency tree of these packages is of the
# form `python_version < "3.1x"`, so the 3.11 resolution is the superset; on
# newer Pythons the extra pins (typing-extensions, ...) are merely unused.
# --generate-hashes records the hashes of every file of each pinned release
# (all wheels for every platform and the sdist), so the same lock installs on
# slim and alpine, amd64 and arm64 with `pip install --require-hashes --no-deps`.
#
#   requirements/lock.sh           regenerate, upgrading every pin to the newest
#                                  release the .in files allow
#   requirements/lock.sh --keep    regenerate, keeping every existing pin (and its
#                                  hashes): only what the .in files added or changed
#                                  is resolved, e.g. a new package, a new pin
#   requirements/lock.sh --check   only report which pinned packages lack a
#                                  binary wheel per Python x platform of the matrix
#                                  (those are compiled in the alpine builder stage)
set -euo pipefail
cd "$(dirname "$0")"

mode=${1:-}
case $mode in
    ""|--keep|--check) [ $# -le 1 ] || { echo "usage: lock.sh [--keep | --check]" >&2; exit 2; } ;;
    *) echo "usage: lock.sh [--keep | --check]" >&2; exit 2 ;;
esac

PY=${LOCK_PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' || {
    echo "lock.sh: needs Python 3.11 (set LOCK_PYTHON)" >&2; exit 2; }

# Resolve against PyPI only, whatever this machine's pip configuration says
# (keeps local mirrors, find-links and index URLs out of the lock).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cert=${PIP_CERT:-}
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_NO_INDEX
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
[ -n "$cert" ] && export PIP_CERT=$cert

"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q "pip-tools==7.*"

if [ "$mode" = --check ]; then
    # fastapi.txt and starlette.txt are supersets of base.txt
    grep -hE '^[a-z0-9_.-]+==' fastapi.txt starlette.txt | sed 's/ .*//' | sort -u >"$tmp/pins"
    for py in 3.11 3.12 3.13 3.14; do
        for plat in manylinux_2_28_x86_64 manylinux_2_28_aarch64 musllinux_1_2_x86_64 musllinux_1_2_aarch64; do
            arch=${plat#*_*_*_}
            case $plat in
                manylinux*) extra=(--platform "manylinux2014_$arch") ;;  # pip expands manylinux_2_28 downwards
                musllinux*) extra=(--platform "musllinux_1_1_$arch") ;;  # but not musllinux
            esac
            dl=(--no-deps --only-binary=:all: --python-version "$py" --implementation cp
                --platform "$plat" "${extra[@]}" -d "$tmp/dl")
            if "$tmp/venv/bin/pip" download -q "${dl[@]}" -r "$tmp/pins" >/dev/null 2>&1; then
                echo "cp$py $plat: every pinned package has a wheel"
                continue
            fi
            while read -r pin; do  # name the ones without a wheel
                "$tmp/venv/bin/pip" download -q "${dl[@]}" "$pin" >/dev/null 2>&1 \
                    || echo "cp$py $plat: no wheel for $pin (built from the sdist)"
            done <"$tmp/pins"
        done
    done
    exit 0
fi

# Without --upgrade pip-compile starts from the pins already in the output file
# and keeps each one that still satisfies the .in files, with the hashes recorded
# for it; fastapi.txt and starlette.txt follow base.txt through `-c base.txt`.
upgrade=(--upgrade)
[ "$mode" = --keep ] && upgrade=()
compile() {
    CUSTOM_COMPILE_COMMAND="requirements/lock.sh" \
    "$tmp/venv/bin/pip-compile" -q --generate-hashes --strip-extras --no-emit-index-url \
        --no-emit-find-links \
        --resolver backtracking "${upgrade[@]}" -o "$1.txt" "$1.in"
}
compile base
compile fastapi
compile starlette
echo "locks written: base.txt fastapi.txt starlette.txt"
