# The two commands a newcomer runs: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
FMNIST_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup dataset demo test lint zoo zoo-report bench bench-status bench-retime

setup: $(VENV)/.installed dataset

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -e '.[dev,ray]'
	touch $@

# Debian's Fashion-MNIST (IDX files); installed only when missing.
dataset:
	@test -f $(FMNIST_DIR)/t10k-images-idx3-ubyte.gz || { $(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; }

demo: setup
	$(VENV)/bin/fewprune demo

test: setup
	$(VENV)/bin/python -m pytest

lint: setup
	$(VENV)/bin/ruff check src tests

zoo-report: setup
	$(VENV)/bin/fewprune zoo report --out benchmarks/ZOO.md

# Train every zoo teacher that is not shipped yet, one after another, resuming from
# per-epoch checkpoints under $(TRAIN_DIR) (hours on 2 CPU cores: run it in the background).
TRAIN_DIR ?= $(HOME)/.cache/fewprune/train
RECIPES ?= resnet20-fmnist resnet56-fmnist vgg16-fmnist vit-fmnist mobilenetv2-fmnist lraspp-fmnist-scenes
zoo: setup
	@for r in $(RECIPES); do \
	  if [ -f src/fewprune/models/weights/$$r.json ]; then echo "$$r: shipped"; continue; fi; \
	  $(VENV)/bin/fewprune train $$r --out $(TRAIN_DIR)/$$r --install || exit 1; \
	done

# Run (or resume) every committed sweep in order, regenerating its report; hours on 2 CPU cores.
# Each finished cell is kept, so this can be stopped and restarted at any time (Ctrl-C: after the cells in
# progress). SHARDS=N runs N single-thread processes that share each sweep (--shard I/N); a sweep measured
# beside another reuses the other's matching cells, even ones finished while it runs. With shards, the reports
# are regenerated once all have ended, and the exit status is a failed shard's (130: stopped for new code).
SWEEPS ?= headline aligned hybrid hybrid-aligned baselines asca asca-scratch cma-ablation cma recipes blocks-vs-filters recovery explainability
SHARDS ?= 1
# SEEDS=0 / MODELS=zoo:a,zoo:b / METHODS=l1+kd,l1+mir: run only those seeds' / models' / methods' jobs this time
# (the reports cover every row)
ONLY = $(if $(SEEDS),--seeds $(SEEDS)) $(if $(MODELS),--models $(MODELS)) $(if $(METHODS),--methods $(METHODS))
bench: setup
	@if [ "$(SHARDS)" = 1 ]; then \
	  for s in $(SWEEPS); do $(VENV)/bin/fewprune bench benchmarks/$$s.yaml $(ONLY) || exit 1; done; \
	else \
	  pids=; for i in $$(seq 0 $$(($(SHARDS) - 1))); do \
	    ( for s in $(SWEEPS); do OMP_NUM_THREADS=1 $(VENV)/bin/fewprune bench benchmarks/$$s.yaml --threads 1 \
	        --shard $$i/$(SHARDS) $(ONLY) || exit $$?; done ) & pids="$$pids $$!"; \
	  done; rc=0; for p in $$pids; do wait $$p || rc=$$?; done; \
	  for s in $(SWEEPS); do $(VENV)/bin/fewprune bench benchmarks/$$s.yaml --report-only > /dev/null || exit 1; done; \
	  exit $$rc; \
	fi

# What each sweep has done and left, with the CPU time left (runs nothing).
bench-status: setup
	@for s in $(SWEEPS); do $(VENV)/bin/fewprune bench benchmarks/$$s.yaml --status $(ONLY) || exit 1; echo; done

# Re-time every finished structure of the named sweeps back to back with its teacher, on THREADS threads, and
# regenerate their reports. Run it with nothing else loading the CPU (stop the sweeps first): the speed-ups
# the reports give are these timings.
THREADS ?= 2
bench-retime: setup
	@for s in $(SWEEPS); do OMP_NUM_THREADS=$(THREADS) $(VENV)/bin/fewprune bench benchmarks/$$s.yaml \
	  --remeasure-latency --threads $(THREADS) || exit 1; done
