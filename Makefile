# modsingest: see README.md.  Every target that runs code installs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo bench fixtures clients faults clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: install lint
	$(BIN)/python -m pytest -q

# Lint and format check (ruff; ignored rules and why in pyproject.toml).
lint: install
	$(BIN)/ruff check src tests tools
	$(BIN)/ruff format --check src tests tools

demo: install
	$(BIN)/python tools/demo.py

bench: install
	$(BIN)/python tools/bench.py

# Fault runs, longer than make test: the hostile-input property test with many more mutants.
faults: install
	MODSINGEST_FAULT_EXAMPLES=2000 $(BIN)/python -m pytest -q tests/test_hostile.py --hypothesis-show-statistics

# Regenerate the recorded fixtures on purpose (never done by the tests).
fixtures: install
	$(BIN)/python tools/make_fixtures.py --write

# The offline reducers' own code, in an environment of its own (docs/formats.md):
# the client tests run PypeIt's readers on exported files through its python.
CLIENTS := .venv-clients
PYPEIT_VERSION := 2.0.1

clients: $(CLIENTS)/.pypeit-$(PYPEIT_VERSION)

$(CLIENTS)/.pypeit-$(PYPEIT_VERSION):
	rm -rf $(CLIENTS)
	$(PYTHON) -m venv $(CLIENTS)
	$(CLIENTS)/bin/pip install --quiet --upgrade pip
	$(CLIENTS)/bin/pip install --quiet 'pypeit==$(PYPEIT_VERSION)'
	touch $@

clean:
	rm -rf $(VENV) $(CLIENTS) build src/*.egg-info .pytest_cache
