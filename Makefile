# The two commands (README): `make up` sets up and deploys the single-gpu stack on the lab;
# `make test` sets up and runs the whole test suite.
STACK ?= single-gpu
PYTEST_ARGS ?=

.PHONY: setup up down test lint

setup:
	@bash scripts/setup.sh

up: setup
	.venv/bin/tierkit up --stack $(STACK)

down: setup
	.venv/bin/tierkit down --stack $(STACK)

# pytest exits 5 when it collected no test: that is a broken suite, not a pass.
test: setup
	@.venv/bin/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; failing" >&2; exit 1; fi; \
	exit $$rc

lint: setup
	.venv/bin/ansible-lint --profile production
