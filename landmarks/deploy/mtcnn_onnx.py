"""Owns MTCNN in ONNX Runtime: the shipped Caffe nets (models/mtcnn/detN) converted once to
detN.onnx (landmarks.deploy.onnx_export.graph_to_onnx: input and outputs keep their Caffe
names, N, H and W free) into a cache folder named after the Caffe files' contents, each net
checked against Caffe before the folder is published; and `detector(backend, ...)`, the one
way the tools open an MTCNN on any backend.

The cache is `build/mtcnn-onnx/<key>/` (ignored by git; a changed caffemodel or prototxt gets a
new key, so a stale conversion is never used), written to a temporary folder and renamed, with
`check.json` recording the largest difference from Caffe per net and output.
"""
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from landmarks.common.atomic import write_json
from landmarks.deploy.onnx_export import export_graph
from landmarks.runtime.backends import GRAPH_BACKENDS, load_graph, unavailable
from landmarks.runtime.mtcnn import MODEL_DIR, MTCNN, NETS, net_files

CACHE = Path(__file__).resolve().parents[2] / "build" / "mtcnn-onnx"
TOLERANCE = 1e-4  # largest absolute difference from Caffe allowed, on any output
# One check input per net (N, C, H, W): P-Net at a size that is not square and not a multiple
# of its stride (ceil-mode pooling and the free H, W both matter there)
CHECK_SHAPES = {"pnet": (2, 3, 37, 29), "rnet": (3, 3, 24, 24), "onet": (3, 3, 48, 48), "lnet": (2, 15, 24, 24)}
OUTPUTS = {"pnet": ("prob1", "conv4-2"), "rnet": ("prob1", "conv5-2"), "onet": ("prob1", "conv6-2", "conv6-3"),
           "lnet": tuple(f"fc5_{k}" for k in range(1, 6))}


def source_key(model_dir=MODEL_DIR):
    """A short hash of the four nets' Caffe files (contents, in a fixed order)."""
    digest = hashlib.sha256()
    for files in net_files(model_dir).values():
        for path in files:
            digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def _reference_backend():
    for backend in ("caffe", "opencv"):
        if unavailable(backend) is None:
            return backend
    raise RuntimeError("neither pycaffe nor OpenCV imports here: nothing to check the ONNX nets against")


def check_against_caffe(model_dir, onnx_dir, seed=0):
    """{net: {output: largest |ONNX - reference|}} on random inputs of CHECK_SHAPES; raises
    RuntimeError naming the net and output when one is above TOLERANCE."""
    reference, rng, report = _reference_backend(), np.random.default_rng(seed), {}
    caffe_files, onnx_files = net_files(model_dir), net_files(onnx_dir, "onnxruntime")
    for net in NETS:
        batch = rng.uniform(-1, 1, CHECK_SHAPES[net]).astype(np.float32)
        want = load_graph(reference, *caffe_files[net]).run(batch, OUTPUTS[net])
        got = load_graph("onnxruntime", *onnx_files[net]).run(batch, OUTPUTS[net])
        report[net] = {}
        for name, a, b in zip(OUTPUTS[net], want, got):
            if a.shape != b.shape:
                raise RuntimeError(f"{onnx_files[net][0]}: {name} has shape {b.shape}, {reference} gives {a.shape}")
            report[net][name] = float(np.abs(a - b).max())
            if report[net][name] > TOLERANCE:
                raise RuntimeError(f"{onnx_files[net][0]}: {name} differs from {reference} by {report[net][name]:.2g} "
                                   f"(more than {TOLERANCE:g})")
    return {"reference": reference, "largest_difference": report}


def onnx_models(model_dir=MODEL_DIR, cache=CACHE):
    """The folder of detN.onnx for the Caffe nets in model_dir, converted and checked the first
    time (a few seconds), reused after."""
    missing = [str(p) for files in net_files(model_dir).values() for p in files if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no such file (MTCNN's Caffe models; see models/mtcnn/README.md)")
    cache = Path(cache)
    folder = cache / source_key(model_dir)
    if (folder / "check.json").is_file():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=cache))
    try:
        for net, (deploy, weights) in net_files(model_dir).items():
            export_graph(deploy, weights, tmp / f"{NETS[net]}.onnx")
        write_json(tmp / "check.json", {"source": str(Path(model_dir).resolve()), **check_against_caffe(model_dir, tmp)})
        try:
            os.rename(tmp, folder)
        except OSError:  # another process published the same conversion first
            if not (folder / "check.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def check_record(folder):
    """The agreement record written beside a conversion."""
    return json.loads((Path(folder) / "check.json").read_text())


def detector_backend(backend):
    """The runtime MTCNN runs in beside a cascade on `backend`: the same where MTCNN can run there,
    float ONNX Runtime beside the int8 cascade, our Caffe beside anything else (ncnn)."""
    if backend in GRAPH_BACKENDS:
        return backend
    return "onnxruntime" if backend.startswith("onnxruntime") else "caffe"


def detector(backend="caffe", model_dir=MODEL_DIR, **options):
    """An MTCNN on `backend` (caffe, opencv: the Caffe files; onnxruntime: their conversion)."""
    if backend == "onnxruntime":
        return MTCNN(model_dir=onnx_models(model_dir), backend=backend, **options)
    return MTCNN(model_dir=model_dir, backend=backend, **options)
