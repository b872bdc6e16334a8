#!/usr/bin/env bash
# The asgi-start benchmark, one command: bash bench/run.sh [bench.py options, e.g. --rounds 5]
# Makes two pinned venvs under bench/.venvs (the project's servers from requirements/dev.txt, and the
# anchor inboard from bench/requirements-inboard.txt), then runs bench/bench.py, which prints the
# Markdown tables and writes bench/RESULTS.md (+ raw data in bench/RESULTS.json).
# Needs wrk and hyperfine on PATH; case 5 needs root and a writable cgroup v1 cpu hierarchy.
#
#   bash bench/run.sh --targets [--quick]   only the performance targets of issue 8, under the image's
#                                           conditions: bench/TARGETS.md (+ .json); needs wrk only, and
#                                           only the servers venv
#   BENCH_SERVERS_VENV=.venv bash bench/run.sh --targets   use an existing venv with the pinned servers
#   BENCH_INBOARD_VENV=none bash bench/run.sh --only 2,3 --cases '^(granian|4 servers)'
#                                           no anchor venv: for runs whose cases launch no inboard
#                                           (BENCH_INBOARD_VENV=DIR reuses an existing one)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENVS=${BENCH_VENVS:-bench/.venvs}
targets=0
for arg in "$@"; do
    [ "$arg" = --targets ] && targets=1
done
tools="wrk hyperfine"
[ "$targets" = 1 ] && tools="wrk"
for tool in $tools; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is not installed (apt-get install $tool)" >&2; exit 2; }
done

venv() {  # venv DIR REQUIREMENTS: (re)create when the requirements file changed
    local dir=$1 requirements=$2 stamp
    stamp=$(cat "$requirements" requirements/base.in | sha256sum | cut -c1-16)
    if [ "$(cat "$dir/.stamp" 2>/dev/null)" != "$stamp" ]; then
        rm -rf "$dir"
        "$PYTHON" -m venv "$dir"
        "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
        echo "$stamp" >"$dir/.stamp"
    fi
}
if [ -n "${BENCH_SERVERS_VENV:-}" ]; then
    servers=$(realpath "$BENCH_SERVERS_VENV")
else
    venv "$VENVS/servers" requirements/dev.txt
    servers=$(realpath "$VENVS/servers")
fi
if [ "$targets" = 1 ]; then
    exec "$servers/bin/python" bench/bench.py --servers-venv "$servers" "$@"
fi
if [ "${BENCH_INBOARD_VENV:-}" = none ]; then
    exec "$servers/bin/python" bench/bench.py --servers-venv "$servers" "$@"
elif [ -n "${BENCH_INBOARD_VENV:-}" ]; then
    inboard=$(realpath "$BENCH_INBOARD_VENV")
else
    venv "$VENVS/inboard" bench/requirements-inboard.txt
    inboard=$(realpath "$VENVS/inboard")
fi
exec "$servers/bin/python" bench/bench.py --servers-venv "$servers" --inboard-venv "$inboard" "$@"
