# Two commands on a fresh machine: `make serve` and `make test`.
# torch is pinned to the local CPU wheel so no CUDA download ever happens.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: install serve test lint bench gpu-prepare clean

# The serving install: the package and its runtime dependencies, as in the image (no extras).
$(VENV)/.serve-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e .
	touch $@

# Everything on top: test tools, the [train] extra (training, eval, plots) and the client.
$(VENV)/.installed: $(VENV)/.serve-installed clients/python/pyproject.toml
	$(PY) -m pip install -q -e '.[dev,train]' -e 'clients/python[onnx]'
	touch $@

install: $(VENV)/.installed

serve: $(VENV)/.serve-installed  ## serve the shipped checkpoints: embedded cache, CPU, no other services
	$(VENV)/bin/neumeta serve --host $(HOST) --port $(PORT)

test: install  ## the whole suite, slow tests included (~minutes on 2 cores)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install  ## ruff (E, F, I, B, UP) and mypy --strict; both read their settings from pyproject.toml
	$(PY) -m ruff check service kernels clients tests deploy benchmarks
	$(PY) -m mypy

bench: install
	$(PY) -m benchmarks.export
	$(PY) -m kernels.bench --device cpu --quick

gpu-prepare: install  ## fill data/fmnist and .whl for a lent GPU's one call (docs/GPU.md)
	PY=$(PY) bash deploy/gpu/prepare.sh

clean:
	rm -rf $(VENV) .pytest_cache
