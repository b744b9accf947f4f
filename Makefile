# modsingest: see README.md.  Every target that runs code installs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo bench fixtures clean

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

# Regenerate the recorded fixtures on purpose (never done by the tests).
fixtures: install
	$(BIN)/python tools/make_fixtures.py --write

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
