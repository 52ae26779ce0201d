# One entry point for a newcomer and for CI: each target sets up what it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: up pay test lint bench bench-scale protos clean help

help:
	@echo "make up      run the whole stack on http://127.0.0.1:8080 (Ctrl-C stops it)"
	@echo "make pay INVOICE=<id> [AMOUNT=0.01]  pay an invoice on make up's dev chain"
	@echo "make test    lint + the whole test suite (starts its own servers)"
	@echo "make lint    ruff (lint + format check) and mypy --strict"
	@echo "make bench   benchmarks, results as JSON in bench-results/"
	@echo "make bench-scale  every read query on a shard of 1M invoices -> bench-results/bench-scale.json"
	@echo "make protos  regenerate Python code from protos/"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# Import the code from this checkout: the repo root and protos/ on the venv's path.
	printf '%s\n%s\n' "$(CURDIR)" "$(CURDIR)/protos" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/checkout-dev.pth"
	touch $(STAMP)

protos: $(STAMP)
	$(BIN)/python tools/gen_protos.py

up: $(STAMP) protos
	$(BIN)/python -m tools.devstack up

pay: $(STAMP)
	@test -n "$(INVOICE)" || { echo "usage: make pay INVOICE=<invoice id> [AMOUNT=<crypto amount>]"; exit 2; }
	$(BIN)/python -m tools.pay "$(INVOICE)" $(if $(AMOUNT),--amount "$(AMOUNT)")

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs services tools tests

test: $(STAMP) protos lint
	$(BIN)/python -m pytest

bench: $(STAMP) protos
	$(BIN)/python -m tools.bench

# A fresh shard of one million invoices in a temp dir (about 10 minutes); ARGS passes options,
# e.g. ARGS='--data-dir .dev/scale --reuse' keeps the shard for the next run.
bench-scale: $(STAMP) protos
	$(BIN)/python -m tools.bench_scale $(ARGS)

clean:
	rm -rf $(VENV) .dev bench-results
