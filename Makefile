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

.PHONY: install install-dev system-deps demo build-demo serve test lint wheel-check screenshots bench clean

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

# What the tests drive for real, from Debian's packages: a PostgreSQL server and Chromium for the
# playground's browser tests (Playwright's own browser downloads are not used). Installed when
# missing; CI runs as root on a clean machine, elsewhere sudo is tried without a prompt, and
# failing that those tests skip, saying why.
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo"; \
	  else echo "system-deps: missing$$missing and cannot install as $$(id -un); their tests will skip"; exit 0; fi; \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Regenerates the README's screenshots of the playground (needs the shared evaluation data for
# the pictures page).
screenshots: install-dev system-deps
	AISLE_SCREENSHOTS=$(CURDIR)/docs/screenshots $(PY) -m pytest -q tests/playground/test_browser.py

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
