"""Cascaded MobileNet-V2 facial landmarks in Caffe: nets, solvers, conventions and tools.

Each convention has one owner module: `labels` (point order and normalisation), `crop`
(the level-2 crop rule), `metrics` (the error measure); `nets` and `solvers` generate the
Caffe files; `caffe_runtime` finds and drives the Caffe build.
"""
