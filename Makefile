# Thin front door: each target names one command; the settings live in the Python code.
# `make help` lists the targets and the variables they pass through.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CAFFE_GPU ?= auto
PYTEST_ARGS ?=
MTFL        ?=

# Workflow settings (defaults live in workflow/settings.py; empty means "use that default").
RUN       ?= default
DATA      ?=
DATASET   ?=
SCHEDULE  ?= auto
GPU       ?= auto
DEPTHWISE ?= layer
FORMAT    ?= hdf5
THRESH    ?= 0.05
SIZE      ?= 48
COUNT     ?= 5000
SEED      ?= 1
LIMIT     ?= 0
RESUME    ?=
AUG       ?=
CROPS     ?= auto
LOSS      ?= auto
ITERS     ?= 0
REBUILD   ?=
IMAGES    ?=
# Every value reaches the shell as one single-quoted word, whatever it holds (spaces, ;, $, `, '):
# `$(call q,$(RUN))`. PYTEST_ARGS alone is split into words: it is a list of pytest options.
q = '$(subst ','\'',$(1))'
RUN_ARGS = --dataset $(call q,$(DATA)) --dataset-format $(call q,$(DATASET)) --schedule $(call q,$(SCHEDULE)) \
           --gpu $(call q,$(GPU)) --depthwise $(call q,$(DEPTHWISE)) --format $(call q,$(FORMAT)) \
           --thresh $(call q,$(THRESH)) --input-size $(call q,$(SIZE)) --count $(call q,$(COUNT)) --seed $(call q,$(SEED)) \
           --limit $(call q,$(LIMIT)) $(if $(filter 1 yes true,$(RESUME)),--resume,) \
           $(if $(AUG),--augment $(call q,$(AUG)),) --train-crops $(call q,$(CROPS)) --loss $(call q,$(LOSS)) \
           --iterations $(call q,$(ITERS)) $(if $(filter 1 yes true,$(REBUILD)),--rebuild,)

LAYER_SOURCES := $(shell find caffe_ext/layers -type f 2>/dev/null)
CAFFE_STAMP   := build/.caffe-stamp
VENV_STAMP    := $(VENV)/.deps-stamp
DEBS_STAMP    := build/.debs-stamp
CUDA_STAMP    := build/.caffe-cuda-stamp

.PHONY: help setup test prototxt clean-caffe data level1 crops level2 demo report export timing cuda-build gpu-kit

help:  ## this list
	@grep -E '^[a-z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16
	@echo
	@echo "Variables (default):"
	@echo "  RUN="$(call q,$(RUN))"        outputs in runs/<RUN>/"
	@echo "  DATA=           dataset root: CelebA as distributed, MTFL or Sun et al.'s lists (empty: the built-in synthetic CelebA, COUNT="$(call q,$(COUNT))" images)"
	@echo "  DATASET=        celeba | mtfl | sun: the layout of DATA (empty: detected from the files present)"
	@echo "  SCHEDULE=auto   article | demo | real | smoke (auto: article on a GPU, demo on a CPU;"
	@echo "                  real: the recipe for real faces on a CPU, about an hour)"
	@echo "  AUG=            augmented copies per training image (empty: the schedule's)"
	@echo "  CROPS=auto      level 2's training crops: prediction | truth (auto: the schedule's)"
	@echo "  LOSS=auto       euclidean | wing (auto: the schedule's)"
	@echo "  ITERS=0         iterations per level, lr steps scaled along (0: the schedule's)"
	@echo "  GPU=auto        0 | 0,1 | all | empty for CPU (auto: GPU 0 when there is one)"
	@echo "  DEPTHWISE=layer layer (our ConvolutionDepthwise) | group (stock Convolution)"
	@echo "  FORMAT=hdf5     hdf5 | lmdb       THRESH=0.05  crops: level-1 error above which training images are dropped"
	@echo "  SIZE=48         input side        LIMIT=0      use only the first N images"
	@echo "  RESUME=1        continue training from the newest whole .solverstate of this run"
	@echo "  REBUILD=1       rebuild the data even when its manifest.json says it is current"
	@echo "  IMAGES=         export: a dataset root of real faces to check and calibrate on (or DATA=; one is"
	@echo "                  required: its val split checks, its train split calibrates); timing: a folder of JPEGs"
	@echo "  CAFFE_GPU=auto  setup: CUDA build auto | 0 (CPU-only) | 1 (required)"
	@echo "  PYTEST_ARGS=    extra pytest arguments for make test"
	@echo "  MTFL=           make test: a copy of MTFL for the tests on real faces (without one they skip)"

setup: $(CAFFE_STAMP)  ## Debian packages, .venv, Caffe + pycaffe with our layers (idempotent)
	@echo "setup: ready. caffe: $(VENV)/bin/caffe   python: $(PY)"

$(DEBS_STAMP): caffe_ext/install_debs.sh
	bash caffe_ext/install_debs.sh
	@mkdir -p build && touch $@

$(VENV_STAMP): requirements.txt requirements-pnnx.txt pyproject.toml $(DEBS_STAMP)
	test -x $(PY) || $(call q,$(PYTHON)) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-pnnx.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

$(CAFFE_STAMP): $(VENV_STAMP) caffe_ext/build_caffe.py $(LAYER_SOURCES)
	CAFFE_GPU=$(call q,$(CAFFE_GPU)) $(PY) caffe_ext/build_caffe.py --stamp $@

# The CUDA variant, compile-checked (pinned CUDA wheels, sm_90) in build/caffe-cuda; skipped
# with one line where the wheels cannot be had. It does not replace the CPU build.
$(CUDA_STAMP): $(VENV_STAMP) caffe_ext/build_caffe.py caffe_ext/cuda_toolkit.py $(LAYER_SOURCES)
	$(PY) caffe_ext/build_caffe.py --cuda-check --stamp $@

cuda-build: $(CUDA_STAMP)  ## the CUDA build in build/caffe-cuda (sm_90), compile-checked; make test runs it

gpu-kit: setup cuda-build  ## gpu-kit/: what a bare NVIDIA GPU machine needs to run `bash gpu-kit/run.sh`
	$(PY) tools/gpu_kit.py --out gpu-kit

test: setup cuda-build  ## the whole test suite (runs the set-up and the CUDA compile check first)
	$(if $(MTFL),LANDMARKS_MTFL_DIR=$(call q,$(MTFL)) ,)$(PY) -m pytest $(PYTEST_ARGS)

prototxt: setup  ## regenerate the canonical nets and solvers in prototxt/ and solvers/
	$(PY) tools/make_prototxt.py --canonical

data: setup  ## level-1 HDF5 + LMDB from DATA (default: synthetic CelebA)
	$(PY) tools/run.py data --run $(call q,$(RUN)) $(RUN_ARGS)

level1: setup  ## prepare data, train level 1 with caffe, predict every image, evaluate, plot
	$(PY) tools/run.py level1 --run $(call q,$(RUN)) $(RUN_ARGS)

crops: setup  ## level-2 data from level 1's predictions (THRESH=0.05 drops bad training crops)
	$(PY) tools/run.py crops --run $(call q,$(RUN)) $(RUN_ARGS)

level2: setup  ## train level 2, run the cascade on every image, compare with level 1
	$(PY) tools/run.py level2 --run $(call q,$(RUN)) $(RUN_ARGS)

demo: setup  ## the whole chain on synthetic CelebA with the CPU schedule, in runs/demo/
	$(PY) tools/run.py demo --run $(call q,$(if $(filter default,$(RUN)),demo,$(RUN))) $(RUN_ARGS)

export: setup  ## runs/<RUN>/export/: both levels folded (stock Caffe, OpenCV), ONNX, int8, ncnn; checked; README
	$(PY) tools/export.py --run $(call q,runs/$(RUN)) $(if $(DATA),--dataset $(call q,$(DATA)),$(if $(IMAGES),--dataset $(call q,$(IMAGES)),))

timing: setup  ## runs/<RUN>/timing.json: every backend at batch 1 and 64 (uses runs/<RUN>/export/ when there)
	$(PY) tools/forward_timing.py --run $(call q,runs/$(RUN)) $(if $(IMAGES),--images $(call q,$(IMAGES)),)

report: setup  ## rebuild runs/<RUN>/report.md from what the run folder holds
	$(PY) tools/run.py report --run $(call q,$(RUN))

clean-caffe:  ## forget the Caffe builds (the downloaded source and wheels are kept)
	rm -rf build/caffe build/caffe-cuda $(CAFFE_STAMP) $(CUDA_STAMP)
