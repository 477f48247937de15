# uquant developer tasks.  `make test` does all set-up itself on a fresh clone.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?= -q tests

# Stamps: setup reruns only when its inputs change.
PY_STAMP := $(VENV)/.stamp-setup
NODE_STAMP := node_modules/.stamp-setup
NODE_LOCK := $(wildcard package-lock.json)

.PHONY: setup test demo digits sensor-lstm bench clean

setup: $(PY_STAMP) $(NODE_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch==2.13.0 first and on its own, so pip takes the CPU wheel on disk
# and nothing else can pull in a CUDA build.
$(PY_STAMP): pyproject.toml Makefile | $(PY)
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[test]'
	# torchao (PT2E) does not pin torch: --no-deps keeps torch 2.13.0 (tests/test_pt2e.py skips without it)
	$(PY) -m pip install --no-deps torchao==0.18.0
	# torchvision 0.28.0 is the release for torch 2.13; --no-deps for the same reason (uquant.torchvision_models)
	$(PY) -m pip install --no-deps torchvision==0.28.0
	touch $@

$(NODE_STAMP): package.json $(NODE_LOCK)
	if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
	touch $@

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(PY) -m uquant.demo

digits: setup
	$(PY) examples/digits.py

sensor-lstm: setup
	$(PY) examples/sensor_lstm.py

bench: setup
	$(PY) -m uquant.bench

clean:
	rm -rf build dist .pytest_cache .hypothesis
	find . -path ./.venv -prune -o -path ./node_modules -prune -o \
		\( -name __pycache__ -o -name '*.egg-info' \) -type d -print0 | xargs -0 rm -rf
