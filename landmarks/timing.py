"""Owns forward-speed measurement of trained models, and the two model-file chores it needs:
rewriting our (or the released models') `ConvolutionDepthwise` layers as stock grouped
`Convolution` so that OpenCV's dnn can read the net, and counting a caffemodel's size.

`time_models` times, for each backend (pycaffe on CPU, on GPU when the build and the machine
have one, and OpenCV's dnn on CPU), at batch 1 and at a large batch:
- "level1" / "level2": one network forward on already-preprocessed inputs (input copy and
  output read-back included, as a caller sees them);
- "cascade": the whole chain from JPEG files on disk to final points in original pixels:
  decode, resize, level 1, the crop rule, decode and crop again, level 2, map back. It runs
  landmarks.inference.Cascade unchanged; OpenCV nets plug into it through `OpenCVNet`, which
  has DeployNet's `forward` / `size` interface.
Each figure is the median and 90th percentile over `repeats` timed calls after `warmup`
untimed ones. Images repeat (cyclically) to fill a large batch and are in the OS file cache
after the warm-up, so the cascade rows measure decoding, not disk reads.
"""
import os
import platform
import tempfile
import time
from itertools import cycle, islice
from pathlib import Path

import cv2
import numpy as np
from google.protobuf import text_format

from landmarks.images import read_level1, read_level2
from landmarks import caffe_runtime
from landmarks.inference import Cascade, DeployNet, check_model_files
from landmarks.labels import as_points
from landmarks.runs import LEVELS

DEPTHWISE_TYPE = "ConvolutionDepthwise"
BACKENDS = ("caffe-cpu", "caffe-gpu", "opencv-cpu")
DEFAULT_REPEATS = 30  # enough for a stable p90 while a batch-64 cascade stays a few seconds
DEFAULT_WARMUP = 3  # first calls allocate buffers, fill caches and (GPU) initialise cuDNN/cuBLAS
DEFAULT_LARGE_BATCH = 64  # the demo schedule's training batch; CelebA-scale evaluation batches
SYNTHETIC_IMAGES = 8  # enough variety of image sizes for the cascade row
INPUT_VARIANTS = 8  # distinct preprocessed batches per forward row (memory: 8 x batch x 27 KB)


def _read_net(path):
    from caffe.proto import caffe_pb2

    with open(path) as handle:
        return text_format.Merge(handle.read(), caffe_pb2.NetParameter())


def to_group_convolution(deploy_in, deploy_out):
    """Writes deploy_in to deploy_out with every ConvolutionDepthwise layer turned into a
    stock Convolution with group = num_output (the same computation, the same C x 1 x k x k
    weight blob, so a caffemodel saved with either type loads into both). Returns how many
    layers were rewritten (0: the copy is the same net)."""
    net = _read_net(deploy_in)
    rewritten = 0
    for layer in net.layer:
        if layer.type == DEPTHWISE_TYPE:
            layer.type = "Convolution"
            layer.convolution_param.group = layer.convolution_param.num_output
            rewritten += 1
    deploy_out = Path(deploy_out)
    deploy_out.parent.mkdir(parents=True, exist_ok=True)
    tmp = deploy_out.with_name(f".{deploy_out.name}.tmp-{os.getpid()}")
    tmp.write_text(f"# {deploy_in} with {DEPTHWISE_TYPE} rewritten as grouped Convolution "
                   f"(landmarks.timing.to_group_convolution)\n" + text_format.MessageToString(net))
    tmp.replace(deploy_out)
    return rewritten


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


def _input_size(net):
    """The input side S of a deploy NetParameter (Input layer, or the old input_shape/input_dim)."""
    for layer in net.layer:
        if layer.type == "Input" and layer.input_param.shape:
            return int(layer.input_param.shape[0].dim[-1])
    if net.input_shape:
        return int(net.input_shape[0].dim[-1])
    if net.input_dim:
        return int(net.input_dim[-1])
    raise ValueError("the net declares no input shape")


class OpenCVNet:
    """A deploy prototxt + caffemodel in OpenCV's dnn (CPU), with DeployNet's interface
    (`forward(batch) -> (N, k, 2)`, `size`), so that inference.Cascade can run on it.
    ConvolutionDepthwise layers, which OpenCV does not know, are rewritten on the way in."""

    def __init__(self, deploy, weights, output=None):
        check_model_files(deploy, weights)
        self.deploy, self.weights = str(deploy), str(weights)
        self.size = _input_size(_read_net(deploy))
        with tempfile.TemporaryDirectory() as tmp:
            readable = Path(tmp) / "deploy_group.prototxt"
            self.rewritten = to_group_convolution(deploy, readable)
            # OpenCV matches the caffemodel's blobs to layers by name, not type: the weights
            # of a ConvolutionDepthwise model load unchanged.
            self.net = cv2.dnn.readNetFromCaffe(str(readable), self.weights)
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        # Same rule as DeployNet: the released models and ours end in fc2.
        self.output = output or ("fc2" if "fc2" in self.net.getLayerNames() else "")

    def forward(self, batch):
        """(N, 3, S, S) float32 -> (N, k, 2) normalised points."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self.net.setInput(batch)
        out = self.net.forward(self.output) if self.output else self.net.forward()
        return as_points(out.reshape(batch.shape[0], -1))


def synthetic_images(out_dir, count=SYNTHETIC_IMAGES, seed=0):
    """Writes `count` synthetic CelebA-like JPEGs (data_prep.synthetic) to out_dir; their paths."""
    from data_prep.synthetic import render_sample

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        sample = render_sample(seed, index)
        path = out_dir / sample.name
        path.write_bytes(sample.jpeg())
        paths.append(str(path))
    return paths


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


def _load(backend, model):
    if model is None:
        return None
    if backend.startswith("opencv"):
        return OpenCVNet(*model)
    return DeployNet(*model)


def _set_caffe_mode(backend):
    import caffe

    if backend == "caffe-gpu":
        caffe.set_device(0)  # before set_mode_gpu, as pycaffe's examples do
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()


def default_backends():
    """Caffe CPU and OpenCV CPU always; Caffe GPU when the build and the machine have one."""
    return ["caffe-cpu"] + (["caffe-gpu"] if caffe_runtime.gpu_count() > 0 else []) + ["opencv-cpu"]


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


def time_models(level1, level2=None, images=None, repeats=DEFAULT_REPEATS, warmup=DEFAULT_WARMUP,
                batch=1, large_batch=DEFAULT_LARGE_BATCH, backends=None, progress=None):
    """Times level 1, level 2 (when given) and the cascade; returns the JSON-ready result:
    {"rows": [{"what", "backend", "batch", "median_ms", "p90_ms", "per_image_ms", "repeats"}],
     "model_sizes": {"level1": {"path", "bytes", "values"}, ...}, "images": {...}, "settings": {...},
     "environment": {...}}.

    level1 / level2: (deploy prototxt, caffemodel). images: JPEG paths (None: a few synthetic
    ones in a temporary folder). progress: None, or a callable given each finished row."""
    models = {"level1": level1, "level2": level2}
    backends = list(backends or default_backends())
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backend(s) {sorted(unknown)}; choose from {BACKENDS}")
    batches = sorted({int(batch), int(large_batch)})
    with tempfile.TemporaryDirectory() as tmp:
        source = "given"
        if not images:
            images, source = synthetic_images(Path(tmp) / "images"), "synthetic (data_prep.synthetic)"
        images = [str(p) for p in images]
        # Inputs for the forward-only rows: real preprocessed images and the crops that
        # level 1 (Caffe CPU) gives them, as the cascade would feed the nets.
        _set_caffe_mode("caffe-cpu")
        reference = Cascade(_load("caffe-cpu", level1), _load("caffe-cpu", level2))
        first, sizes = reference.level1_batch(images)
        inputs = {"level1": [read_level1(p, reference.level1.size)[0] for p in images]}
        if level2 is not None:
            _, boxes = reference.level2_batch(images, first, sizes)
            inputs["level2"] = [read_level2(p, b, reference.level2.size)[0] for p, b in zip(images, boxes)]
        rows = []
        try:
            for backend in backends:
                if backend.startswith("caffe"):
                    _set_caffe_mode(backend)
                cascade = Cascade(_load(backend, level1), _load(backend, level2))
                nets = {"level1": cascade.level1, "level2": cascade.level2}
                for size in batches:
                    for level in LEVELS:
                        if nets[level] is None:
                            continue
                        # a few different batches in turn, not one (a repeated input could flatter caches)
                        stacks = [np.stack(_batch_of(inputs[level], i * size, size))
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
            _set_caffe_mode("caffe-cpu")
    return {
        "rows": rows,
        "model_sizes": {name: dict(model_size(m[1]), deploy=str(m[0])) for name, m in models.items() if m},
        "images": {"source": source, "count": len(images),
                   "mean_size": [float(np.mean([s[0] for s in sizes])), float(np.mean([s[1] for s in sizes]))],
                   "paths": images if source == "given" else []},
        "settings": {"repeats": repeats, "warmup": warmup, "batches": batches, "backends": backends,
                     "cascade_levels": 2 if level2 else 1},
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


def format_table(result):
    """The rows and model sizes as a plain-text table."""
    lines = [f"{'what':<9} {'backend':<11} {'batch':>5} {'median ms':>10} {'p90 ms':>9} {'ms/image':>9}"]
    for row in result["rows"]:
        lines.append(f"{row['what']:<9} {row['backend']:<11} {row['batch']:>5} {row['median_ms']:>10.3f} "
                     f"{row['p90_ms']:>9.3f} {row['median_ms'] / row['batch']:>9.3f}")
    lines.append("")
    for name, size in result["model_sizes"].items():
        lines.append(f"{name}: {size['path']}: {size['bytes']:,} bytes, {size['values']:,} stored values "
                     f"({4 * size['values']:,} bytes as float32)")
    return "\n".join(lines)
