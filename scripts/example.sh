#!/usr/bin/env bash
# Serve the bundled example app (example/app/main.py) through start.py on http://127.0.0.1:8000.
# Sets up .venv with the image's locked servers first. Extra arguments go to start.py,
# e.g. `bash scripts/example.sh --dry-run`; SERVER=uvicorn or SERVER=hypercorn switches server.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements/base.txt
cd example
export HOST=${HOST:-127.0.0.1} PORT=${PORT:-8000}
# prestart.py (the example pre-start script) waits for WAIT_FOR, if set, before the server starts.
export PRE_START_PATH=${PRE_START_PATH:-../prestart.py}
exec ../.venv/bin/python ../start.py "$@"
