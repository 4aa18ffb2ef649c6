# The two commands: `make demo` and `make test`. Everything they need is installed from here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo test unit integration lint package bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

system-deps:
	@bash tools/ensure_system_deps.sh

demo: install system-deps
	$(BIN)/python -m cdc.demo --dir .devstack/demo

test: install system-deps
	$(BIN)/python -m pytest -q tests

unit: install
	$(BIN)/python -m pytest -q tests/unit

integration: install system-deps
	$(BIN)/python -m pytest -q tests/integration

lint: install
	$(BIN)/ruff check cdc lambda tools tests
	$(BIN)/mypy cdc

bench: install system-deps
	$(BIN)/python tools/bench.py --changes $(or $(CHANGES),200000) --repeat $(or $(REPEAT),3) --out bench.json

package:
	ARCH=$${ARCH:-x86_64} bash tools/package.sh

clean:
	rm -rf $(VENV) .devstack .pytest_cache .mypy_cache .ruff_cache
