# modsingest: see README.md.  Every target that runs code installs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    ?= $(BIN)/pip
STAMP  := $(VENV)/.installed
PROD_STAMP := $(VENV)/.installed-prod

.PHONY: install install-prod test lint demo bench fixtures clients faults clean

# Which Python made the environment: version and base installation.  A .venv made by
# another Python (an older one, a removed one) or broken is rebuilt from scratch,
# not patched: pip into a foreign or dead interpreter leaves it broken for good.
PY_ID   = import sys; print(sys.version.split()[0], sys.base_prefix)
WANT_ID := $(shell $(PYTHON) -c '$(PY_ID)' 2>/dev/null)
HAVE_ID := $(shell $(BIN)/python -c '$(PY_ID)' 2>/dev/null)
ifeq ($(WANT_ID),)
.PHONY: $(STAMP) $(PROD_STAMP)
else ifneq ($(WANT_ID),$(HAVE_ID))
.PHONY: $(STAMP) $(PROD_STAMP)
endif

define fresh_venv
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	  || { echo "modsingest needs Python 3.11 or newer: $(PYTHON) is not (make install PYTHON=python3.11)"; exit 1; }
	@if [ -e $(VENV) ] && [ "$$($(BIN)/python -c '$(PY_ID)' 2>/dev/null)" != "$(WANT_ID)" ]; then \
	  echo "$(VENV) was made by another Python, or is broken: rebuilding it with $(PYTHON) ($(WANT_ID))"; \
	  rm -rf $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
endef

# Development and CI: the package (editable) with the test extras.
install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(fresh_venv)
	$(PIP) install --quiet -e '.[test]'
	touch $(STAMP)

# Production (docs/install.md): the package and its runtime dependencies only, no
# test extras; editable, so the checkout is the installed code and --version names
# its commit; bytecode compiled now, since the service cannot write it later.
install-prod: $(PROD_STAMP)

$(PROD_STAMP): setup.cfg pyproject.toml
	$(fresh_venv)
	$(PIP) install --quiet -e .
	$(BIN)/python -m compileall -q src
	touch $(PROD_STAMP)

test: install lint
	$(BIN)/python -m pytest -q

# Lint, format and type checks (ruff: ignored rules and why in pyproject.toml; mypy: src/, its settings there too).
lint: install
	$(BIN)/ruff check src tests tools
	$(BIN)/ruff format --check src tests tools
	$(BIN)/mypy

demo: install
	$(BIN)/python tools/demo.py

bench: install
	$(BIN)/python tools/bench.py
	$(BIN)/python tools/bench_telemetry.py
	$(BIN)/python tools/bench_outputs.py
	$(BIN)/python tools/bench_digest.py

# Fault runs, longer than make test: the hostile-input property test with many more mutants,
# then the real service under faults (tools/faults.py: about 30 min, root for the tmpfs cases;
# FAULTS_ARGS=--quick for the short version, as tests/test_faults.py runs it). docs/reliability.md.
faults: install
	MODSINGEST_FAULT_EXAMPLES=2000 $(BIN)/python -m pytest -q tests/test_hostile.py --hypothesis-show-statistics
	$(BIN)/python tools/faults.py $(FAULTS_ARGS)

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
