# make setup: .venv with the pinned requirements; make run: every task (quick profile); make test: pytest
# (the optional extras installed first); make check: the fast tier (no slow tests);
# make pages: the lesson pages in site/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= quick

# The offline data sets beside the repo, when they are there (CI and this project's machines).
ifeq ($(origin KERAS_TUTORIALS_DATA), undefined)
ifneq ($(wildcard ../shared/datasets),)
export KERAS_TUTORIALS_DATA := $(abspath ../shared/datasets)
endif
endif

.PHONY: setup setup-compare run test check pages clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

# Optional extras for the framework comparison (PyTorch twins); the tests that need them skip without them.
setup-compare: $(VENV)/.installed-compare

$(VENV)/.installed-compare: requirements-compare.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -r requirements-compare.txt
	touch $@

# The extras (PyTorch, several GB) only where the captioning encoder can come from nowhere else: no cached
# weights and no download (models/encoders.py: resolve_auto).
run: setup
	@if $(BIN)/python -m models.encoders --needs-extras; then $(MAKE) setup-compare; fi
	$(BIN)/python run_all.py --profile $(PROFILE)

# The extras first, so that the twin, EfficientNet and backend tests run instead of skipping; pytest's last
# line counts what still skipped, and why (README: "What a skipped test means").
test: setup setup-compare
	$(BIN)/python -m pytest

# The fast tier while you work: every test but those marked slow (a few minutes on 2 cores). CI and the README
# run `make test`, which runs every tier.
check: setup
	$(BIN)/python -m pytest -m "not slow"

# The lessons, their measured results and newest runs as a static site (offline): open site/index.html.
pages: setup
	$(BIN)/python -m pages

clean:
	rm -rf runs tuning_runs site .pytest_cache
