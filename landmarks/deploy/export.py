"""Owns the deployment export of one net or a whole run: the folded portable Caffe model
(landmarks.deploy.fold), ONNX and its int8 version (landmarks.deploy.onnx_export), ncnn through pnnx from
the ONNX file (fp32 weights), each checked against the original Caffe net on real inputs, and
the folder's README on how to load each file.

A net's folder holds (stem = `model`):
  deploy.prototxt, weights.caffemodel   folded, stock layer types (stock Caffe, OpenCV dnn)
  deploy_depthwise.prototxt             the same with our ConvolutionDepthwise (faster in our Caffe)
  model.onnx                            float32, dynamic batch (ONNX Runtime, OpenCV 5, ...)
  model.int8.onnx                       static int8 (QDQ), calibrated on real images
  model.ncnn.param, model.ncnn.bin      ncnn, fp32 (only where pnnx is installed)
  export.json                           file sizes, fold counts, agreement, skipped formats
"""
import importlib.util
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from landmarks.common.atomic import write_json
from landmarks.deploy import fold, onnx_export
from landmarks.runtime import backends

TOLERANCE = 1e-4  # the agreement every float export must reach, in normalised output units
FOLDED = ("deploy.prototxt", "weights.caffemodel")
OURS = "deploy_depthwise.prototxt"  # the folded net with our ConvolutionDepthwise: faster in our Caffe
ONNX, INT8 = "model.onnx", "model.int8.onnx"
NCNN = ("model.ncnn.param", "model.ncnn.bin")


def pnnx_binary():
    """The pnnx executable of the installed `pnnx` wheel (found without importing the package,
    which imports torch), or None."""
    spec = importlib.util.find_spec("pnnx")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "pnnx"
    return str(path) if path.is_file() else None


def export_ncnn(onnx_path, out_dir, size):
    """ncnn .param/.bin from an ONNX file through pnnx, fp32 (pnnx's default fp16 costs about 0.2
    in the normalised output). Returns the two paths; RuntimeError with pnnx's words on failure."""
    binary = pnnx_binary()
    if binary is None:
        raise RuntimeError("pnnx is not installed (pip install pnnx)")
    out_dir = Path(out_dir).resolve()  # pnnx runs in a temporary folder: no relative paths
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        source = Path(tmp) / "model.onnx"
        shutil.copy(onnx_path, source)
        result = subprocess.run([binary, str(source), f"inputshape=[1,3,{size},{size}]", "fp16=0"],
                                cwd=tmp, capture_output=True, text=True, timeout=300)
        made = [Path(tmp) / name for name in NCNN]
        if result.returncode != 0 or not all(p.is_file() for p in made):
            raise RuntimeError(f"pnnx failed on {onnx_path}: {(result.stderr or result.stdout).strip()[-500:]}")
        for path in made:
            path.replace(out_dir / path.name)
    return tuple(str(out_dir / name) for name in NCNN)


def file_sizes(paths):
    return {Path(p).name: Path(p).stat().st_size for p in paths}


def _difference(reference, other):
    return float(np.abs(np.asarray(reference) - np.asarray(other)).max())


def export_net(deploy, weights, out_dir, check_inputs, calibration_inputs, echo=print):
    """Every format of one net into out_dir, each checked on `check_inputs` ((N, 3, S, S)
    preprocessed real images) against the original net in our Caffe. Returns the record that
    export.json holds: {"files": {format: [paths]}, "sizes", "fold", "agreement", "skipped"}."""
    out_dir = Path(out_dir)
    fold.read_model(deploy, weights)  # a clear ModelError before Caffe would abort on a mismatch
    out_dir.mkdir(parents=True, exist_ok=True)
    original = backends.load("caffe", (deploy, weights))
    size = original.size
    check_inputs = np.asarray(check_inputs, dtype=np.float32)
    reference = original.forward(check_inputs)
    record = {"source": {"deploy": str(deploy), "weights": str(weights), "bytes": Path(weights).stat().st_size},
              "input_size": size, "files": {}, "agreement": {}, "skipped": {}, "tolerance": TOLERANCE,
              "check_images": int(len(check_inputs))}
    folded = [str(out_dir / name) for name in FOLDED]
    record["fold"] = fold.fold_model(deploy, weights, *folded, ours_out=out_dir / OURS)
    record["files"]["caffe"] = folded
    record["files"]["caffe-depthwise"] = [str(out_dir / OURS), folded[1]]
    onnx_path = onnx_export.export_onnx(*folded, out_dir / ONNX)
    record["files"]["onnxruntime"] = [str(onnx_path)]
    reason = backends.unavailable("onnxruntime")
    if reason is None:
        onnx_export.quantise_int8(onnx_path, out_dir / INT8, calibration_inputs)
        record["files"]["onnxruntime-int8"] = [str(out_dir / INT8)]
    else:
        record["skipped"]["onnxruntime-int8"] = reason
    try:
        record["files"]["ncnn"] = list(export_ncnn(onnx_path, out_dir, size))
    except RuntimeError as exc:
        record["skipped"]["ncnn"] = str(exc)
    # every format in every runtime that can read it, against the original net
    runs = [("caffe", "caffe"), ("caffe-depthwise", "caffe-depthwise"), ("opencv", "caffe"), ("onnxruntime", "onnxruntime"),
            ("onnxruntime-int8", "onnxruntime-int8"), ("ncnn", "ncnn")]
    for name, files_key in runs:
        runtime = name.replace("-int8", "").replace("-depthwise", "")
        if files_key not in record["files"]:
            continue
        reason = backends.unavailable(runtime)
        if reason:
            record["skipped"][name] = reason
            continue
        net = backends.load(runtime, record["files"][files_key], size=size)
        record["agreement"][name] = _difference(reference, net.forward(check_inputs))
    record["sizes"] = {key: sum(Path(p).stat().st_size for p in files) for key, files in record["files"].items()}
    failed = {k: v for k, v in record["agreement"].items() if not k.endswith("int8") and not v <= TOLERANCE}
    record["agrees"] = not failed
    if failed:
        echo(f"{out_dir}: outputs differ from the original by more than {TOLERANCE}: {failed}")
    write_json(out_dir / "export.json", record)
    return record


def onnx_net(deploy, weights, out_dir):
    """The float ONNX file of one level (folded, then landmarks.deploy.onnx_export) in out_dir,
    without the other formats and checks of export_net: what a tool needs to run a level in ONNX
    Runtime from a caffemodel it was given. Returns the .onnx path."""
    out_dir = Path(out_dir)
    folded = [str(out_dir / name) for name in FOLDED]
    fold.fold_model(deploy, weights, *folded)
    return onnx_export.export_onnx(*folded, out_dir / ONNX)


def format_record(name, record):
    """A few lines on one exported net: sizes and agreement."""
    lines = [f"{name}: original {record['source']['bytes']:,} bytes; folded "
             f"{record['fold']['folded_batchnorm']} BatchNorm + {record['fold']['folded_scale']} Scale, "
             f"{record['fold']['dropped_dropout']} Dropout dropped, "
             f"{record['fold']['depthwise_to_group']} depthwise -> grouped Convolution"]
    for key, size in record["sizes"].items():
        lines.append(f"  {key:<18} {size:>10,} bytes")
    for key, diff in record["agreement"].items():
        verdict = "ok" if diff <= TOLERANCE else ("int8: see the error change" if key.endswith("int8") else "TOO FAR")
        lines.append(f"  max |output - original Caffe| {key:<18} {diff:.3g}  ({verdict}; {record['check_images']} real images)")
    for key, reason in record["skipped"].items():
        lines.append(f"  skipped {key}: {reason}")
    return "\n".join(lines)
