# Two commands do all set-up on a fresh machine with only python3 and pip:
#   make demo   run the demo (server + clients + forced disconnects) on the embedded SQLite store
#   make test   install everything, start the servers the tests need, run every test, lint, type check,
#               and the core + e2e suites again on the oldest supported python-socketio (make matrix)
SHELL := /bin/bash
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)

.PHONY: setup lock demo test lint typecheck pytest matrix bench chaos js services clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q 'uv==0.13.8'

# requirements-dev.txt pins every package (versions only); `make lock` regenerates it.
setup: $(UV)
	@test -x $(PY) || $(UV) venv -q $(VENV)
	@if [ -f uv.lock ] && [ uv.lock -nt requirements-dev.txt ]; then $(MAKE) --no-print-directory lock; fi
	$(UV) pip sync -q --python $(PY) requirements-dev.txt

lock: $(UV)
	$(UV) lock -q
	$(UV) export -q --all-packages --all-extras --group dev --no-hashes --no-header \
		--format requirements-txt -o requirements-dev.txt

js:
	bash scripts/install-js.sh

services:
	bash scripts/install-services.sh

demo: setup js
	$(PY) contrib/examples/demo.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy core/src

pytest: setup services js
	$(PY) -m pytest -q -p no:randomly

# The version matrix: core + e2e suites on the oldest supported python-socketio/engineio in
# .venv-oldest (the newest is .venv). See docs/compatibility.md.
matrix: setup services js
	UV=$(UV) PYTHON=$(PYTHON) bash scripts/version-matrix.sh

test: lint typecheck pytest matrix

bench: setup services js
	$(PY) bench/run.py

chaos: setup services js
	$(PY) bench/chaos.py
	$(PY) bench/faults.py
	HOSTILE_PROFILE=long HOSTILE_EXAMPLES=200 $(PY) -m pytest -q -p no:randomly tests/hostile

clean:
	rm -rf $(VENV) .venv-oldest $(TOOLS) tests/js/node_modules
