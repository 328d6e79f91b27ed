"""Owns forward-speed measurement of trained models in every inference backend
(landmarks.runtime.backends), side by side in one process, and counting a caffemodel's size.

`time_models` times, for each backend, at batch 1 and at a large batch:
- "level1" / "level2": one network forward on already-preprocessed inputs (input copy and
  output read-back included, as a caller sees them);
- "cascade": the whole chain from JPEG files on disk to final points in original pixels:
  decode, resize, level 1, the crop rule, decode and crop again, level 2, map back. It runs
  landmarks.runtime.inference.Cascade unchanged on each backend's nets.
Backends: `caffe` (the original model in our Caffe, CPU), `caffe-folded` (landmarks.deploy.fold's
model in our Caffe, with our ConvolutionDepthwise layer, which beats stock grouped convolution), `caffe-gpu` (the original on GPU, where the build and the machine have
one), `opencv` (the folded model in OpenCV's dnn), `onnxruntime`, `onnxruntime-int8` and
`ncnn` (landmarks.deploy.export's files). The exported files come from an export folder when it
matches the models (runs/<RUN>/export/), else they are made in a temporary folder from the
timing images (the int8 model is then calibrated on those few images). The caller gives the
images (tools/forward_timing.py draws synthetic ones when the user names none).
Each figure is the median and 90th percentile over `repeats` timed calls after `warmup`
untimed ones. Images repeat (cyclically) to fill a large batch and are in the OS file cache
after the warm-up, so the cascade rows measure decoding, not disk reads.
"""
import json
import os
import platform
import tempfile
import time
from itertools import cycle, islice
from pathlib import Path

import cv2
import numpy as np

from landmarks.common import caffe_runtime
from landmarks.conventions.crop import level2_box
from landmarks.conventions.images import read_level1, read_level2
from landmarks.runtime import backends as runtimes
from landmarks.runtime.inference import ARTICLE, Cascade

BACKENDS = ("caffe", "caffe-folded", "caffe-gpu", "opencv", "onnxruntime", "onnxruntime-int8", "ncnn")
# backend -> (runtime, which files: "original" or an export record's "files" key)
_SOURCES = {"caffe": ("caffe", "original"), "caffe-gpu": ("caffe", "original"), "caffe-folded": ("caffe", "caffe-depthwise"),
            "opencv": ("opencv", "caffe"), "onnxruntime": ("onnxruntime", "onnxruntime"),
            "onnxruntime-int8": ("onnxruntime", "onnxruntime-int8"), "ncnn": ("ncnn", "ncnn")}
DEFAULT_REPEATS = 30  # enough for a stable p90 while a batch-64 cascade stays a few seconds
DEFAULT_WARMUP = 3  # first calls allocate buffers, fill caches and (GPU) initialise cuDNN/cuBLAS
DEFAULT_LARGE_BATCH = 64  # the demo schedule's training batch; CelebA-scale evaluation batches
INPUT_VARIANTS = 8  # distinct preprocessed batches per forward row (memory: 8 x batch x 27 KB)


def model_size(weights):
    """{"path", "bytes" (the file), "values" (stored parameters: every blob of every layer)}."""
    from caffe.proto import caffe_pb2

    data = Path(weights).read_bytes()
    net = caffe_pb2.NetParameter()
    net.ParseFromString(data)
    # `layers` is the pre-2015 (V1) field: old released models may still use it.
    values = sum(len(b.data) + len(b.double_data) for layer in list(net.layer) + list(net.layers)
                 for b in layer.blobs)
    return {"path": str(weights), "bytes": len(data), "values": int(values)}


def measure(call, repeats=DEFAULT_REPEATS, warmup=DEFAULT_WARMUP):
    """Times call(i) for i in range(repeats) after `warmup` untimed calls; milliseconds."""
    for i in range(warmup):
        call(i)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - start) * 1000.0)
    return np.array(times)


def _batch_of(items, start, size):
    """`size` items from position `start` of the endless cycle of `items`."""
    return list(islice(cycle(items), start % len(items), start % len(items) + size))


def _set_caffe_mode(backend):
    import caffe

    if backend == "caffe-gpu":
        caffe.set_device(0)  # before set_mode_gpu, as pycaffe's examples do
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()


def default_backends():
    """Every backend whose runtime is installed; caffe-gpu only where the build and the machine
    have a GPU."""
    chosen = []
    for backend in BACKENDS:
        if backend == "caffe-gpu" and caffe_runtime.gpu_count() == 0:
            continue
        if runtimes.unavailable(_SOURCES[backend][0]) is None:
            chosen.append(backend)
    return chosen


def _matching_export(folder, level, model):
    """The export record of `level` in `folder` when it was made from this very model, else None."""
    if folder is None:
        return None
    path = Path(folder) / level / "export.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    source = record.get("source", {})
    same = Path(source.get("weights", "")).resolve() == Path(model[1]).resolve() and \
        Path(source.get("deploy", "")).resolve() == Path(model[0]).resolve()
    return record if same else None


def exports(models, inputs, export_dir, tmp):
    """{level: export record}: from export_dir when it matches the models, else made in tmp."""
    from landmarks.deploy.export import export_net

    records = {}
    for level, model in models.items():
        if model is None:
            continue
        records[level] = _matching_export(export_dir, level, model) or \
            export_net(*model, Path(tmp) / "export" / level, inputs[level], inputs[level], echo=lambda *a: None)
    return records


def backend_files(backend, level, model, record):
    """(runtime, files) of a backend for one level, or None when the export lacks that format."""
    runtime, key = _SOURCES[backend]
    if key == "original":
        return runtime, model
    files = record["files"].get(key)
    return (runtime, files) if files else None


def _environment():
    try:
        mode = caffe_runtime.build_info().get("mode")
    except caffe_runtime.CaffeNotBuilt:
        mode = None
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((ln.split(":", 1)[1].strip() for ln in handle if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores_available": len(os.sched_getaffinity(0)), "caffe_build": mode,
            "gpus": caffe_runtime.gpu_count(), "opencv": cv2.__version__, "opencv_threads": cv2.getNumThreads(),
            "python": platform.python_version(), "machine": platform.node()}


def time_models(level1, level2=None, images=(), repeats=DEFAULT_REPEATS, warmup=DEFAULT_WARMUP,
                batch=1, large_batch=DEFAULT_LARGE_BATCH, backends=None, progress=None, export_dir=None, recipe=ARTICLE,
                image_source="given"):
    """Times level 1, level 2 (when given) and the cascade; returns the JSON-ready result:
    {"rows": [{"what", "backend", "batch", "median_ms", "p90_ms", "per_image_ms", "repeats"}],
     "model_sizes": {"level1": {"path", "bytes", "values"}, ...} (the original caffemodels),
     "backend_sizes": {backend: {level: bytes of its model files}}, "skipped": {backend: why},
     "images": {...}, "settings": {...}, "environment": {...}}.

    level1 / level2: (deploy prototxt, caffemodel). images: JPEG paths; image_source: what
    they are, for the record (their paths are kept only when "given"). export_dir: a landmarks.deploy.export_run folder to take the
    exported files from. progress: None, or a callable given each finished row. recipe: how the
    cascade rows run the nets (landmarks.runtime.inference.RECIPES; the level rows are one forward)."""
    models = {"level1": level1, "level2": level2}
    backends = list(backends or default_backends())
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backend(s) {sorted(unknown)}; choose from {BACKENDS}")
    batches = sorted({int(batch), int(large_batch)})
    skipped = {}
    with tempfile.TemporaryDirectory() as tmp:
        source = image_source
        images = [str(p) for p in images]
        if not images:
            raise ValueError("no images to time the cascade on")
        # Inputs for the forward-only rows: real preprocessed images and the crops that
        # level 1 (the original model in Caffe, CPU) gives them, as the cascade would feed the nets.
        _set_caffe_mode("caffe")
        reference = Cascade(*(runtimes.load("caffe", m) for m in (level1, level2) if m), recipe=recipe)
        first, sizes = reference.level1_batch(images)
        inputs = {"level1": np.stack([read_level1(p, reference.level1.size)[0] for p in images])}
        if level2 is not None:
            boxes = [level2_box(recipe.crop, pt, *sz) for pt, sz in zip(first, sizes)]
            inputs["level2"] = np.stack([read_level2(p, b, reference.level2.size)[0] for p, b in zip(images, boxes)])
        records = exports(models, inputs, export_dir, tmp) if set(backends) - {"caffe", "caffe-gpu"} else {}
        rows, backend_sizes = [], {}
        try:
            for backend in backends:
                reason = runtimes.unavailable(_SOURCES[backend][0])
                chosen = {lv: backend_files(backend, lv, m, records.get(lv)) for lv, m in models.items() if m}
                if reason or not all(chosen.values()):
                    skipped[backend] = reason or "the export lacks this format: " + "; ".join(
                        records[lv]["skipped"].get(_SOURCES[backend][1], "not written") for lv, f in chosen.items() if not f)
                    continue
                if backend.startswith("caffe"):
                    _set_caffe_mode(backend)
                nets = {lv: runtimes.load(runtime, files, size=inputs[lv].shape[-1]) for lv, (runtime, files) in chosen.items()}
                backend_sizes[backend] = {lv: sum(Path(f).stat().st_size for f in files) for lv, (_, files) in chosen.items()}
                cascade = Cascade(nets["level1"], nets.get("level2"), recipe)
                for size in batches:
                    for level in models:
                        if level not in nets:
                            continue
                        # a few different batches in turn, not one (a repeated input could flatter caches)
                        stacks = [np.stack(_batch_of(list(inputs[level]), i * size, size))
                                  for i in range(min(len(images), INPUT_VARIANTS))]
                        times = measure(lambda i: nets[level].forward(stacks[i % len(stacks)]), repeats, warmup)
                        rows.append(_row(level, backend, size, times))
                        if progress:
                            progress(rows[-1])

                    def whole_chain(i, size=size):
                        paths = _batch_of(images, i * size, size)
                        points, sizes = cascade.level1_batch(paths)
                        if cascade.level2 is not None:
                            cascade.level2_batch(paths, points, sizes)

                    rows.append(_row("cascade", backend, size, measure(whole_chain, repeats, warmup)))
                    if progress:
                        progress(rows[-1])
        finally:
            _set_caffe_mode("caffe")
    return {
        "rows": rows,
        "model_sizes": {name: dict(model_size(m[1]), deploy=str(m[0])) for name, m in models.items() if m},
        "backend_sizes": backend_sizes,
        "skipped": skipped,
        "images": {"source": source, "count": len(images),
                   "mean_size": [float(np.mean([s[0] for s in sizes])), float(np.mean([s[1] for s in sizes]))],
                   "paths": images if source == "given" else []},
        "settings": {"repeats": repeats, "warmup": warmup, "batches": batches, "backends": backends,
                     "cascade_levels": 2 if level2 else 1, "recipe": recipe.as_dict()},
        "definitions": {
            "level1": "one forward of level 1 on preprocessed inputs (input copy and output read included)",
            "level2": "one forward of level 2 on preprocessed crops",
            "cascade": "JPEG files on disk -> final points in original pixels: decode, resize, level 1, "
                       "crop rule, decode and crop, level 2, map back",
        },
        "environment": _environment(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _row(what, backend, batch, times):
    median = float(np.median(times))
    return {"what": what, "backend": backend, "batch": int(batch), "median_ms": median,
            "p90_ms": float(np.percentile(times, 90)), "per_image_ms": median / batch,
            "min_ms": float(times.min()), "repeats": int(len(times))}


def caffe_layer_times(deploy, weights, iterations=1000):
    """`caffe time` (the C++ per-layer timers, batch as the prototxt says: 1) on one model;
    {"total_ms", "by_type": {type: {"ms", "share", "layers"}}, "by_layer": {name: ms}}, forward
    only. Caffe feeds the Input layer zeros: data-dependent layers may look faster than on images."""
    import subprocess

    from landmarks.common.protoio import read_net
    from landmarks.train.caffe_log import parse_time

    command = [caffe_runtime.caffe_binary(), "time", f"-model={deploy}", f"-weights={weights}",
               f"-iterations={int(iterations)}"]
    env = dict(os.environ, GLOG_minloglevel="0")  # the per-layer figures are glog INFO lines
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    layers, totals = parse_time(done.stdout + done.stderr)
    if done.returncode != 0 or not layers:
        raise RuntimeError(f"caffe time failed on {deploy}: {(done.stderr or done.stdout).strip()[-300:]}")
    types = {layer.name: layer.type for layer in read_net(deploy).layer}
    by_layer = {name: times.get("forward", 0.0) for name, times in layers.items()}
    total = sum(by_layer.values())
    by_type = {}
    for name, ms in by_layer.items():
        # Split layers are inserted by Caffe where a blob feeds two layers: not in the prototxt
        entry = by_type.setdefault(types.get(name, "Split (inserted)"), {"ms": 0.0, "layers": 0})
        entry["ms"] += ms
        entry["layers"] += 1
    for entry in by_type.values():
        entry["share"] = entry["ms"] / total if total else 0.0
    by_type = dict(sorted(by_type.items(), key=lambda kv: -kv[1]["ms"]))
    return {"model": str(deploy), "iterations": int(iterations), "total_ms": total,
            "forward_pass_ms": totals.get("Forward pass"), "by_type": by_type, "by_layer": by_layer}


def format_layer_times(times):
    lines = [f"caffe time, {times['model']}, batch 1, {times['iterations']} iterations: forward "
             f"{times['forward_pass_ms']} ms (per-layer sum {times['total_ms']:.3f} ms)",
             "| layer type | layers | ms | share |", "|---|---|---|---|"]
    lines += [f"| {kind} | {e['layers']} | {e['ms']:.4f} | {100 * e['share']:.1f}% |" for kind, e in times["by_type"].items()]
    slowest = sorted(times["by_layer"].items(), key=lambda kv: -kv[1])[:6]
    lines.append("slowest layers: " + ", ".join(f"{name} {ms:.4f} ms" for name, ms in slowest))
    return "\n".join(lines)


def format_table(result):
    """One markdown table: a row per backend; per level and the cascade, the median ms at the
    small batch and the median ms per image at the large one; the model files' bytes."""
    small, large = result["settings"]["batches"][0], result["settings"]["batches"][-1]
    cells = {(r["backend"], r["what"], r["batch"]): r["median_ms"] for r in result["rows"]}
    whats = [w for w in ("level1", "level2", "cascade") if any(k[1] == w for k in cells)]
    recipe = (result["settings"].get("recipe") or {}).get("name", "article")
    names = {"level1": "level 1", "level2": "level 2", "cascade": f"cascade JPEG->points ({recipe} recipe)"}
    head = ["backend"] + [f"{names[w]}, {label}" for w in whats
                          for label in (f"batch {small} ms", f"batch {large} ms/image")] + ["model bytes (" + " + ".join(
                              w.replace("level", "L") for w in whats if w != "cascade") + ")"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for backend in dict.fromkeys(r["backend"] for r in result["rows"]):
        row = [backend]
        for what in whats:
            for b in (small, large):
                value = cells.get((backend, what, b))
                row.append("-" if value is None else f"{value / (b if b == large else 1):.3f}")
        sizes = result.get("backend_sizes", {}).get(backend, {})
        row.append(" + ".join(f"{v:,}" for v in sizes.values()) or "-")
        lines.append("| " + " | ".join(row) + " |")
    for backend, why in result.get("skipped", {}).items():
        lines.append(f"\n{backend}: skipped ({why})")
    env = result.get("environment", {})
    lines.append(f"\nMedians of {result['settings']['repeats']} calls after {result['settings']['warmup']} warm-up; "
                 f"{env.get('cpu', '?')}, {env.get('cores_available', '?')} cores; {result['images']['count']} "
                 f"{result['images']['source']} images.")
    return "\n".join(lines)
