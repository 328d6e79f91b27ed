"""Cascaded MobileNet-V2 facial landmarks in Caffe: the library, the lowest floor of the house
(tools -> workflow -> data_prep -> landmarks). It never imports data_prep, workflow or tools.

Its packages by job, each importing only those listed before it:
    common       atomic files, the run lock, progress, option checks, prototxt I/O, the Caffe build
    conventions  labels, images, crop, metrics, draw: one owner per convention
    nets         the MobileNet-V2 nets, schedules and solvers, and where the generated files go
    train        the `caffe train` driver, snapshots, Caffe logs, loss curves, the step benchmark
    runtime      model checks, the backends (our Caffe, OpenCV, ONNX Runtime, ncnn), the cascade
    deploy       folding, ONNX, int8, ncnn exports and their checks
    evaluate     the figures of a run and forward timing
tests/test_layering.py keeps the floors.
"""
import os

# Our Caffe's CPU layers use OpenMP threads and OpenBLAS has threads of its own. OpenMP's
# default is to spin after each parallel region, which takes the cores from OpenBLAS's next
# GEMM (the 1x1 convolutions ran about 1.7x slower so). libgomp reads this once, when pycaffe
# loads it, so it is set here, before any module of this package imports caffe; `caffe train`
# inherits it, and the `.venv/bin/caffe` wrapper sets it too. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
