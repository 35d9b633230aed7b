#!/usr/bin/env bash
# The version matrix: the core and end-to-end suites on the OLDEST supported python-socketio and
# python-engineio (the newest runs in the main .venv, pinned by requirements-dev.txt).
#
#   bash scripts/version-matrix.sh          (`make matrix`, part of `make test`)
#
# Builds .venv-oldest with every package of requirements-dev.txt except python-socketio and
# python-engineio, which are pinned at the lower bounds of core/pyproject.toml; installs come
# from uv's cache after the first run. Override with MATRIX_SOCKETIO / MATRIX_ENGINEIO /
# MATRIX_VENV, e.g. MATRIX_SOCKETIO=5.17.1 MATRIX_ENGINEIO=4.15.1 MATRIX_VENV=.venv-5.17.
set -euo pipefail
cd "$(dirname "$0")/.."

UV=${UV:-.tools/bin/uv}
PYTHON=${PYTHON:-python3}
SOCKETIO=${MATRIX_SOCKETIO:-5.16.0}
ENGINEIO=${MATRIX_ENGINEIO:-4.13.2}
VENV=${MATRIX_VENV:-.venv-oldest}
export UV_PYTHON_DOWNLOADS=never
unset UV_PROJECT_ENVIRONMENT VIRTUAL_ENV

test -x "$VENV/bin/python" || "$UV" venv -q --python "$PYTHON" "$VENV"
requirements="$VENV/requirements-matrix.txt"
{
    grep -v -E '^python-(socketio|engineio)==' requirements-dev.txt
    echo "python-socketio==$SOCKETIO"
    echo "python-engineio==$ENGINEIO"
} > "$requirements"
"$UV" pip sync -q --python "$VENV/bin/python" "$requirements"

installed=$("$VENV/bin/python" -c 'from importlib.metadata import version as v; print(v("python-socketio"), v("python-engineio"))')
echo "version matrix: python-socketio $SOCKETIO, python-engineio $ENGINEIO (installed: $installed)"
"$VENV/bin/python" -m pytest -q -p no:randomly core/tests tests/e2e "$@"
