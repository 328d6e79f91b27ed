"""Cascaded MobileNet-V2 facial landmarks in Caffe: nets, solvers, conventions and tools.

Each convention has one owner module: `labels` (point order and normalisation), `crop`
(the level-2 crop rule), `metrics` (the error measure), `images` (decoding and the
network-input preprocessing); `nets` and `solvers` generate the
Caffe files; `caffe_runtime` finds and drives the Caffe build.
"""
import os

# Our Caffe's CPU layers use OpenMP threads and OpenBLAS has threads of its own. OpenMP's
# default is to spin after each parallel region, which takes the cores from OpenBLAS's next
# GEMM (the 1x1 convolutions ran about 1.7x slower so). libgomp reads this once, when pycaffe
# loads it, so it is set here, before any module of this package imports caffe; `caffe train`
# inherits it, and the `.venv/bin/caffe` wrapper sets it too. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
