# Two entry points (see README): `make demo` builds and serves the demo, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000
# Exported ONNX models are cached here (keyed by model content hash), shared by demo and tests.
export AISLE_CACHE_DIR ?= $(CURDIR)/.cache/aisle
export HF_HUB_OFFLINE := 1

.PHONY: install install-dev system-deps demo build-demo serve test lint wheel-check bench clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)

# torch is pinned through constraints.txt so that nothing pulls a CUDA build.
install: $(VENV)/bin/activate
	$(PIP) install -q -c constraints.txt -e '.[export]'

install-dev: $(VENV)/bin/activate
	$(PIP) install -q -c constraints.txt -e '.[export,dev]'

build-demo: install
	$(VENV)/bin/aisle build --catalog demo/catalog.csv --out var/demo-index

serve:
	$(VENV)/bin/aisle serve --index var/demo-index --data-dir var/demo-data --host $(HOST) --port $(PORT)

demo: build-demo serve

# Lint and format check, the built wheel checked in a fresh environment, then the suite.
test: install-dev system-deps lint wheel-check
	$(PY) -m pytest -q

# Servers the tests run for real, from Debian's packages (CI runs as root on a clean machine).
system-deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

wheel-check: install-dev
	bash .ci/wheel_check.sh $(PY)

bench: $(VENV)/bin/activate
	$(PIP) install -q -c constraints.txt -e '.[export,dev,bench]'
	$(PY) benchmarks/run.py --size 100000 --threads 1 --out benchmarks/results

clean:
	rm -rf var .pytest_cache
