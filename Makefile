# w2v: every target makes its own virtual environment in .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
# The GPU build of MXNet when nvidia-smi finds a GPU, the CPU build otherwise.
EXTRA  ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP  := $(VENV)/.installed-$(EXTRA)

.PHONY: install test demo lint bench bench-scale gpu-smoke clean

install: $(STAMP)

$(STAMP): setup.cfg setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRA),test,dev]'
	rm -f $(VENV)/.installed-* && touch $@

test: install
	$(BIN)/python -m pytest

demo: install
	$(BIN)/w2v prepare
	$(BIN)/w2v train --epochs 5 --lr 0.002
	$(BIN)/w2v similar chip -k 3

# gensim goes into the .venv as a benchmark-only extra; the bench compares it with w2v.
# BENCH_EPOCHS=1 BENCH_SEEDS=1 BENCH_OBJECTIVES= BENCH_DIST=0 make bench is the quick mode
# (about a minute; the objectives table and the distributed line take most of the full run).
bench: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRA),bench]'
	W2V_DATA_DIR=$${W2V_DATA_DIR:-../shared/data} $(BIN)/python benchmarks/bench.py

# Not part of `make bench`: prepare and one epoch on PTB repeated 1x, 4x, 16x (many minutes).
bench-scale: install
	W2V_DATA_DIR=$${W2V_DATA_DIR:-../shared/data} $(BIN)/python benchmarks/scale.py --scales 1 4 16

# The GPU path, one line a step (docs/gpu.md); without a GPU only its CPU steps run.
gpu-smoke: install
	$(BIN)/python tools/gpu_smoke.py

lint: install
	$(BIN)/ruff check w2v_cli tests benchmarks tools

clean:
	rm -rf $(VENV) w2v-work build dist *.egg-info .pytest_cache .ruff_cache
