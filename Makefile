# One entry point for a newcomer and for CI: each target sets up what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: up pay test lint bench bench-scale faults protos monitoring lock clean help

help:
	@echo "make up      run the whole stack on http://127.0.0.1:8080 (Ctrl-C stops it)"
	@echo "make pay INVOICE=<id> [AMOUNT=0.01]  pay an invoice on make up's dev chain"
	@echo "make test    lint + the whole test suite (starts its own servers)"
	@echo "make lint    ruff (lint + format check) and mypy --strict"
	@echo "make bench   benchmarks, results as JSON in bench-results/"
	@echo "make bench-scale  every read query on a shard of 1M invoices -> bench-results/bench-scale.json"
	@echo "make faults  the fault suite: kills and restarts under load, then checks (bench-results/faults.json)"
	@echo "make protos  regenerate Python code from protos/"
	@echo "make monitoring  copy deploy/monitoring into deploy/k8s/base/monitoring.yaml"
	@echo "make lock    re-pin requirements.lock and requirements-dev.lock (with hashes) from pyproject.toml"

# Every dependency exactly as pinned (and hashed) in the lock, then this checkout as an editable
# package on top, without resolving anything again. The build backend (setuptools) is in the lock.
$(STAMP): pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	# A virtualenv made before the package was real imported the code through this file.
	rm -f "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/checkout-dev.pth"
	touch $(STAMP)

# The runtime lock (the image) and the dev lock (this Makefile), both with the build backend.
LOCK := $(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
	| $(BIN)/uv pip compile pyproject.toml - --quiet --generate-hashes --python-version 3.11 --custom-compile-command "make lock"
lock: $(STAMP)
	$(LOCK) -o requirements.lock
	$(LOCK) --extra dev -o requirements-dev.lock

protos: $(STAMP)
	$(BIN)/python tools/gen_protos.py

monitoring: $(STAMP)
	$(BIN)/python tools/gen_monitoring.py

up: $(STAMP) protos
	$(BIN)/python -m tools.devstack up

pay: $(STAMP)
	@test -n "$(INVOICE)" || { echo "usage: make pay INVOICE=<invoice id> [AMOUNT=<crypto amount>] [REFUND=<refund id>]"; exit 2; }
	$(BIN)/python -m tools.pay "$(INVOICE)" $(if $(AMOUNT),--amount "$(AMOUNT)") $(if $(REFUND),--refund "$(REFUND)" --account 2)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs services tools tests checkout_admin clients

test: $(STAMP) protos lint
	$(BIN)/python -m pytest

bench: $(STAMP) protos
	$(BIN)/python -m tools.bench

# A fresh shard of one million invoices in a temp dir (about 10 minutes); ARGS passes options,
# e.g. ARGS='--data-dir .dev/scale --reuse' keeps the shard for the next run.
bench-scale: $(STAMP) protos
	$(BIN)/python -m tools.bench_scale $(ARGS)
# FAULTS_ARGS, e.g. "--seed 1234" to replay a run or "--data-dir .dev/faults" to keep its logs.
faults: $(STAMP) protos
	$(BIN)/python -m tools.faults $(FAULTS_ARGS)

clean:
	rm -rf $(VENV) .dev bench-results
