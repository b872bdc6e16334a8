#!/usr/bin/env bash
# The asgi-start benchmark, one command: bash bench/run.sh [bench.py options, e.g. --rounds 5]
# Makes two pinned venvs under bench/.venvs (the project's servers from requirements/dev.txt, and the
# anchor inboard from bench/requirements-inboard.txt), then runs bench/bench.py, which prints the
# Markdown tables and writes bench/RESULTS.md (+ raw data in bench/RESULTS.json).
# Needs wrk and hyperfine on PATH; case 5 needs root and a writable cgroup v1 cpu hierarchy.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENVS=${BENCH_VENVS:-bench/.venvs}
for tool in wrk hyperfine; do
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
venv "$VENVS/servers" requirements/dev.txt
venv "$VENVS/inboard" bench/requirements-inboard.txt

exec "$VENVS/servers/bin/python" bench/bench.py \
    --servers-venv "$(realpath "$VENVS/servers")" --inboard-venv "$(realpath "$VENVS/inboard")" "$@"
