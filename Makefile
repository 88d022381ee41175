# Two commands do all set-up on a fresh machine (see README):
#   make demo   - the main job on the embedded default (TextWorld)
#   make test   - the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup system test test-fast demo lab clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch named explicitly: the CPU build lies on disk here; unpinned, pip pulls CUDA.
	$(PY) -m pip install -q torch==2.13.0 -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

system:  ## Debian packages the tests need (MariaDB for InterCode-SQL)
	bash scripts/system-deps.sh

test: setup system
	$(PY) -m pytest -q tests

test-fast: setup system  ## the fast tier: every module, under 3 minutes
	$(PY) -m pytest -q -m "not slow" tests

demo: setup
	$(VENV)/bin/iprkit batch --preset demo --out runs/demo

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) runs .pytest_cache
