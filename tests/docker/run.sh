#!/usr/bin/env bash
# The image tests, end to end: bash tests/docker/run.sh [TEST-PATH...] [extra pytest args]
#   (leading arguments naming test files or directories of the repository, e.g.
#   tests/docker/test_compat_images.py or tests/docker/test_images.py::test_image_contents,
#   are run instead of the whole of tests/docker)
#
#  1. apt-get install docker.io debootstrap (when missing)
#  2. pytest (+ pytest-timeout) into the venv $VENV (default /work/venv-ci),
#     created with $PYTHON (default python3) when it does not exist
#  3. a private dockerd: no bridge, no iptables, data/exec root and socket in a
#     temporary directory; always stopped again (trap), by its pid
#  4. the stand-in base images (debootstrap, cached in ~/.cache/asgi-start)
#  5. ASGI_START_DOCKER=1 python -m pytest tests/docker (or TEST-PATH...) -m docker
#
# Exits with pytest's status (non-zero on any failure). Needs root.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$REPO/tests/docker
PYTHON=${PYTHON:-python3}
VENV=${VENV:-/work/venv-ci}
export DOCKER=${DOCKER:-/usr/bin/docker}

phase() { printf '\n[run.sh %(%H:%M:%S)T] == %s\n' -1 "$*" >&2; }
t0=$SECONDS
timing() { printf '[run.sh] %-40s %4ds\n' "$1" $((SECONDS - $2)) >&2; }

targets=()
while [ $# -gt 0 ] && [ -n "$1" ] && [ -e "$REPO/${1%%::*}" ]; do
    targets+=("$1")
    shift
done
[ ${#targets[@]} -gt 0 ] || targets=(tests/docker)

if [ "$(id -u)" != 0 ]; then
    echo "tests/docker/run.sh: needs root (dockerd, debootstrap)" >&2
    exit 2
fi

phase "install docker.io, debootstrap"
t=$SECONDS
bash "$HERE/engine.sh" install
timing "install packages" $t

phase "pytest in $VENV"
t=$SECONDS
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -c 'import pytest, pytest_timeout' 2>/dev/null \
    || "$VENV/bin/python" -m pip install -q pytest pytest-timeout
timing "pytest venv" $t

ENGINE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/asgi-start-docker.XXXXXX")
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    phase "stop the engine"
    bash "$HERE/engine.sh" stop "$ENGINE_DIR" || true
    timing "total" "$t0"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

phase "start dockerd"
t=$SECONDS
export "$(bash "$HERE/engine.sh" start "$ENGINE_DIR")"   # DOCKER_HOST=unix://...
timing "start dockerd" $t

phase "stand-in base images"
t=$SECONDS
bash "$HERE/standins.sh" bookworm trixie bullseye
timing "stand-ins (debootstrap or cache + import)" $t

phase "pytest ${targets[*]} -m docker"
t=$SECONDS
cd "$REPO"
rc=0
ASGI_START_DOCKER=1 "$VENV/bin/python" -m pytest "${targets[@]}" -m docker -o timeout=1200 -v -rA --durations=15 "$@" || rc=$?
timing "pytest" $t
exit $rc
