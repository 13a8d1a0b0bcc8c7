# batterytrace — one target per habit. Needs only python3 (>= 3.11) and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: help setup dev demo test browser lint fmt bench fuzz soak clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	@$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode -r requirements.lock
	@$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP) ## create .venv from the lock file

dev: $(STAMP) ## run the whole system on embedded PostgreSQL and Kafka
	$(BIN)/batterytrace dev

demo: $(STAMP) ## run the whole system and load the demo data
	$(BIN)/batterytrace dev --demo

# The suite on TEST_WORKERS pytest-xdist workers, each with its own embedded PostgreSQL and broker (tests/conftest.py).
# The tests mostly wait (consumer groups, polling, service start-up), so 3 workers beat 2 even on 2 cores. Tests
# are handed out one at a time as workers free up, the longest first (conftest.LONG_TESTS). .pyc files are written
# (an inherited PYTHONDONTWRITEBYTECODE would have every worker, service and CLI process compile every module
# from source). TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 3

test: $(STAMP) browser ## run the whole test suite
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist load --maxschedchunk 1

browser: ## Debian's Chromium and a Korean font for the UI browser tests (installed once, when missing)
	@(command -v chromium && fc-list :lang=ko | grep -q .) >/dev/null 2>&1 || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y -qq chromium fonts-nanum >/dev/null)

lint: $(STAMP) ## ruff + mypy
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy shared services devtools

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## benchmarks (registry, events, ...); prints the figures
	$(BIN)/python -m bench

fuzz: $(STAMP) ## API fuzzing, long run: over 10,000 schemathesis requests against the three services
	BT_FUZZ_EXAMPLES=$${BT_FUZZ_EXAMPLES:-50} BT_FUZZ_MIN_REQUESTS=10000 $(BIN)/python -m pytest tests/test_fuzz.py -q

soak: $(STAMP) ## fault matrix 50x + 20 min mixed load with a fault every 2 min; JSON report (SOAK_ARGS="--runs 3 --minutes 4")
	$(BIN)/python -m devtools.soak $(SOAK_ARGS)

clean: ## remove the venv and local data
	rm -rf $(VENV) .data
