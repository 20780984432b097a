# Two commands do all set-up on a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export ZIG_GLOBAL_CACHE_DIR ?= $(CURDIR)/.zigcache
export GOCACHE ?= $(CURDIR)/.gocache
export GOFLAGS ?= -trimpath

.PHONY: install test demo examples bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

examples: $(STAMP)
	$(MAKE) -C examples PATH="$(CURDIR)/$(BIN):$$PATH" PYTHON="$(CURDIR)/$(BIN)/python"

test: examples
	$(BIN)/python -m pytest -q

demo: examples
	$(BIN)/python examples/demo.py

bench: examples
	$(BIN)/python bench/exec.py
	$(BIN)/python bench/archive.py
	$(BIN)/python bench/jobstore.py
	$(BIN)/python bench/membership.py
	$(BIN)/python bench/jobs.py

lint: $(STAMP)
	$(BIN)/ruff check swarm cli tests examples bench
	$(BIN)/ruff format --check swarm cli tests examples bench

clean:
	rm -rf $(VENV) .gocache .zigcache
	$(MAKE) -C examples clean
