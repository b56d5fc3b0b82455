# One entry point for setup, tests, lint and the demo. Pins live in requirements/, not here.
VENV   ?= .venv
PY     := $(VENV)/bin/python
# DDS settings for tests (own domain per run, loopback only) live in tests/conftest.py.

.PHONY: setup setup-gpu test lint typecheck unit demo lock clean

setup:
	@bash scripts/setup_env.sh

# On a machine with an NVIDIA GPU and driver only (never in CI): adds the GPU layer,
# requirements/gpu.txt (onnxruntime-gpu instead of onnxruntime, TensorRT, cuda-bindings), to .venv.
setup-gpu: setup
	@bash scripts/setup_gpu.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint docker/Dockerfile*

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(PY) -m pytest

test: setup lint typecheck unit

demo: setup
	@bash scripts/demo.sh

lock: setup
	$(PY) scripts/lock.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache out
