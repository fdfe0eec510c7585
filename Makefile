# crossmargin: every target installs what it needs from the project's own pinned files.
VENV    := .venv
BIN     := $(VENV)/bin
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test test-fast install gas deploy lint clean stateful-long hypothesis-long node docs

# Test workers: each runs its own ape-managed anvil (pytest-xdist; 2 = the CI machine's cores).
WORKERS ?= 2
PYTEST_PARALLEL := -n $(WORKERS) --dist loadgroup

## demo: install everything, then deploy to an ape-managed anvil and run the demo
demo: install
	ape run demo -v WARNING

## test: install everything, build the docs site (strict), then run the whole test suite on anvil
test: install docs
	ape test tests $(PYTEST_PARALLEL) --durations=15

## test-fast: the inner loop: everything but the tests marked slow, a quarter of the Hypothesis examples
test-fast: install
	CM_EXAMPLES=0.25 ape test tests $(PYTEST_PARALLEL) -m "not slow"

## docs: the documentation site (MkDocs Material + mkdocstrings) into site/; any warning
## (a broken link, a docstring griffe cannot parse) fails the build
docs: install
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict --site-dir site

## node: a local chain that outlives each command (anvil on 8545: the `devnet` network);
## deploy to it with `ape run deploy --network ethereum:devnet:node`
node: node_modules/.installed
	anvil --port 8545

## gas: gas and contract-size benchmark (prints the tables committed to docs/gas.md)
gas: install
	ape run gas

## hypothesis-long: every Hypothesis test at ten times its examples (the protocol's machine has its own target)
hypothesis-long: install
	CM_EXAMPLES=10 ape test tests $(PYTEST_PARALLEL) --deselect tests/test_stateful_protocol.py::test_protocol__random_sequences

## stateful-long: the long profile of the protocol's stateful test (>= 20,000 steps, about an hour)
stateful-long: install
	CM_STATEFUL_STEPS=23000 ape test -s tests/test_stateful_protocol.py

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==0.13.9
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --quiet -r requirements.txt
	$(BIN)/uv pip install --python $(BIN)/python --no-deps --quiet -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $@

lint: install
	$(BIN)/ruff check crossmargin scripts tests bots ape_console_extras.py
	$(BIN)/ruff format --check crossmargin scripts tests bots ape_console_extras.py

clean:
	rm -rf $(VENV) node_modules .build site
