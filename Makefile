# Thin front door: each target names one command; the settings live in the Python code.
# `make help` lists the targets and the variables they pass through.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CAFFE_GPU ?= auto
PYTEST_ARGS ?=

LAYER_SOURCES := $(shell find caffe_ext/layers -type f 2>/dev/null)
CAFFE_STAMP   := build/.caffe-stamp
VENV_STAMP    := $(VENV)/.deps-stamp
DEBS_STAMP    := build/.debs-stamp

.PHONY: help setup test prototxt clean-caffe

help:  ## this list
	@grep -E '^[a-z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16
	@echo
	@echo "Variables: CAFFE_GPU=auto|0|1 (CUDA build: auto-detect, never, required)"
	@echo "           PYTEST_ARGS='...'  (extra pytest arguments for make test)"

setup: $(CAFFE_STAMP)  ## Debian packages, .venv, Caffe + pycaffe with our layers (idempotent)
	@echo "setup: ready. caffe: $(VENV)/bin/caffe   python: $(PY)"

$(DEBS_STAMP): caffe_ext/install_debs.sh
	bash caffe_ext/install_debs.sh
	@mkdir -p build && touch $@

$(VENV_STAMP): requirements.txt pyproject.toml $(DEBS_STAMP)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

$(CAFFE_STAMP): $(VENV_STAMP) caffe_ext/build_caffe.py $(LAYER_SOURCES)
	CAFFE_GPU=$(CAFFE_GPU) $(PY) caffe_ext/build_caffe.py
	touch $@

test: setup  ## the whole test suite (runs the set-up first when needed)
	$(PY) -m pytest $(PYTEST_ARGS)

prototxt: setup  ## regenerate the canonical nets and solvers in prototxt/ and solvers/
	$(PY) tools/make_prototxt.py --canonical

clean-caffe:  ## forget the Caffe build (the downloaded source is kept)
	rm -rf build/caffe $(CAFFE_STAMP)
