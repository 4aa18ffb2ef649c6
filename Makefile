# The two commands: `make demo` and `make test`. Everything they need is installed from here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo test unit integration lint security package bench clean

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
	$(BIN)/ruff format --check cdc lambda tools tests
	$(BIN)/mypy cdc

bench: install system-deps
	$(BIN)/python tools/bench.py --changes $(or $(CHANGES),200000) --repeat $(or $(REPEAT),3) --out bench.json

# Security scans (CI runs them too). bandit: the deployed code (cdc/ and lambda/; not the local
# stand-ins in cdc/devstack and cdc/demo.py, which the package leaves out). Skipped checks:
#   B101 assert: the asserts state internal invariants for mypy and never validate input;
#   B608 SQL built from strings: every identifier goes through the quoting builders of
#        cdc/snowflake/sql.py (ident, literal); tests/integration/test_identifiers.py proves that no
#        table or column name can inject SQL; values go in as escaped literals or bound parameters.
# pip-audit: the installed dependencies against PyPI's vulnerability data. It needs network access
# to pypi.org; --strict makes it fail, rather than pass, when a dependency could not be looked up
# (an offline machine, or a package index serving versions pypi.org does not have), so it runs in
# the CI workflow, where pip installs from pypi.org.
BANDIT_SKIPS := B101,B608

security: install
	$(BIN)/bandit -q -r cdc lambda -x cdc/devstack,cdc/demo.py -s $(BANDIT_SKIPS)
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off

# The Lambda zip: `make package ARCH=arm64` (default x86_64) -> build/lambda.zip, size reported.
package: install
	ARCH=$${ARCH:-x86_64} bash tools/package.sh

clean:
	rm -rf $(VENV) .devstack .pytest_cache .mypy_cache .ruff_cache
