"""Owns the inference backends: one interface over four runtimes, so that the cascade, the tools
and the timing all run the same preprocessing (landmarks.conventions.images), crop rule (landmarks.conventions.crop)
and mapping back (landmarks.conventions.labels) whatever executes the network.

A backend net has `size` (the input side S), `backend` (its name) and
`forward(batch) -> (N, k, 2)` normalised points for an (N, 3, S, S) float32 batch; that is all
landmarks.runtime.inference.Cascade asks of it.

| backend | model files | runtime |
|---|---|---|
| `caffe` | deploy prototxt, caffemodel | pycaffe (our build; CPU, or GPU when set) |
| `opencv` | deploy prototxt, caffemodel | OpenCV dnn (`ConvolutionDepthwise` rewritten on the way in) |
| `onnxruntime` | .onnx (float or int8) | ONNX Runtime, CPU |
| `ncnn` | .ncnn.param, .ncnn.bin | ncnn's Python binding, fp32 throughout |

`load(backend, files)` opens one, `load_exported(name, level_dir)` one from an export folder, and
(files found by name beside its export.json, so the folder can move), and
`load_graph(backend, *files)` a net with several named outputs and any input shape (MTCNN's,
`run(batch, outputs)`: Caffe files in caffe and opencv, an .onnx in onnxruntime); `unavailable(backend)` says why a runtime cannot be used
here (None when it can), so that callers skip it with that reason.
"""
import importlib.util
import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from landmarks.common.protoio import DEPTHWISE_TYPE, read_net, with_input_layers, write_prototxt
from landmarks.conventions.labels import as_points
from landmarks.runtime.model_check import check_caffe_model, check_model_files

BACKENDS = ("caffe", "opencv", "onnxruntime", "ncnn")
# What each backend runs from an export folder (landmarks.deploy.export): our Caffe gets the folded net
# with our ConvolutionDepthwise, OpenCV the portable one; "onnxruntime-int8" is the int8 file.
EXPORT_FILES = {"caffe": "caffe-depthwise", "opencv": "caffe", "onnxruntime": "onnxruntime",
                "onnxruntime-int8": "onnxruntime-int8", "ncnn": "ncnn"}
_MODULES = {"caffe": "caffe", "opencv": "cv2", "onnxruntime": "onnxruntime", "ncnn": "ncnn"}


def unavailable(backend):
    """None when `backend` can run here, else a one-line reason."""
    if backend not in BACKENDS:
        return f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}"
    module = _MODULES[backend]
    if importlib.util.find_spec(module) is None:
        return f"the Python module {module!r} is not installed (pip install -r requirements.txt)"
    return None


def caffe_input_size(deploy):
    """The input side S of a deploy prototxt (Input layer, or the old input_shape/input_dim)."""
    net = read_net(deploy)
    for layer in net.layer:
        if layer.type == "Input" and layer.input_param.shape:
            return int(layer.input_param.shape[0].dim[-1])
    if net.input_shape:
        return int(net.input_shape[0].dim[-1])
    if net.input_dim:
        return int(net.input_dim[-1])
    raise ValueError(f"{deploy}: the net declares no input shape")


class CaffeNet:
    """A deploy prototxt + caffemodel in our Caffe through pycaffe (CPU, or the GPU when the caller
    set caffe.set_mode_gpu()), fed N x 3 x S x S float32 batches."""
    backend = "caffe"

    def __init__(self, deploy, weights, output=None):
        import caffe

        check_caffe_model(deploy, weights)
        self.deploy, self.weights = str(deploy), str(weights)
        self.net = caffe.Net(self.deploy, caffe.TEST, weights=self.weights)
        self.input = self.net.inputs[0]
        # The released models and ours name the output fc2; a net without one uses its last output.
        self.output = output or ("fc2" if "fc2" in self.net.blobs else self.net.outputs[-1])
        self.size = int(self.net.blobs[self.input].data.shape[-1])

    def forward(self, batch):
        """(N, 3, S, S) float32 -> (N, k, 2) normalised points."""
        batch = np.asarray(batch, dtype=np.float32)
        blob = self.net.blobs[self.input]
        if blob.data.shape[0] != batch.shape[0]:
            blob.reshape(*batch.shape)
            self.net.reshape()
        blob.data[...] = batch
        self.net.forward()
        return as_points(self.net.blobs[self.output].data.reshape(batch.shape[0], -1).copy())

    def predict(self, inputs, batch_size=64):
        """Any number of (3, S, S) inputs -> (N, k, 2) normalised points, in batches."""
        inputs = list(inputs)
        out = [self.forward(np.stack(inputs[i:i + batch_size])) for i in range(0, len(inputs), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, 5, 2))


class OpenCVNet:
    """A deploy prototxt + caffemodel in OpenCV's dnn (CPU). ConvolutionDepthwise layers, which
    OpenCV does not know, are rewritten as grouped Convolution on the way in (OpenCV matches the
    caffemodel's blobs to layers by name, so the weights load unchanged)."""
    backend = "opencv"

    def __init__(self, deploy, weights, output=None):
        check_caffe_model(deploy, weights)
        self.deploy, self.weights = str(deploy), str(weights)
        self.size = caffe_input_size(deploy)
        net = read_net(deploy)
        self.rewritten = 0
        for layer in net.layer:
            if layer.type == DEPTHWISE_TYPE:
                layer.type = "Convolution"
                layer.convolution_param.group = layer.convolution_param.num_output
                self.rewritten += 1
        with tempfile.TemporaryDirectory() as tmp:
            readable = write_prototxt(net, Path(tmp) / "deploy_group.prototxt")
            self.net = cv2.dnn.readNetFromCaffe(str(readable), self.weights)
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        # Same rule as CaffeNet: the released models and ours end in fc2.
        self.output = output or ("fc2" if "fc2" in self.net.getLayerNames() else "")

    def forward(self, batch):
        """(N, 3, S, S) float32 -> (N, k, 2) normalised points."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self.net.setInput(batch)
        out = self.net.forward(self.output) if self.output else self.net.forward()
        return as_points(out.reshape(batch.shape[0], -1))


def _onnx_session(path, threads=None):
    """An ONNX Runtime CPU session of a checked model file."""
    import onnxruntime as ort

    check_model_files(path)
    options = ort.SessionOptions()
    # ORT's pool threads spin after each run by default: in the cascade they took the
    # cores from the JPEG decoding between forwards (batch 64 ran 2-3x slower per image).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxNet:
    """An ONNX file (float or quantised) in ONNX Runtime on the CPU."""
    backend = "onnxruntime"

    def __init__(self, path, threads=None):
        self.path, self.session = str(path), _onnx_session(path, threads)
        first = self.session.get_inputs()[0]
        self.input, self.size = first.name, int(first.shape[-1])
        self.output = self.session.get_outputs()[0].name

    def forward(self, batch):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        out = self.session.run([self.output], {self.input: batch})[0]
        return as_points(out.reshape(batch.shape[0], -1))


class NcnnNet:
    """An ncnn .param + .bin (as pnnx writes them: input `in0`, output `out0`), fp32 storage
    and arithmetic (fp16 would cost about 0.2 in the normalised output). ncnn runs one image
    per extractor, so a batch is a loop."""
    backend = "ncnn"

    def __init__(self, param, weights, size, threads=None, input_name="in0", output_name="out0"):
        import ncnn

        check_model_files(param, weights)
        self.param, self.weights, self.size = str(param), str(weights), int(size)
        self.input_name, self.output_name = input_name, output_name
        self.net = ncnn.Net()
        opt = self.net.opt
        opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = False
        opt.use_bf16_storage = False
        opt.num_threads = int(threads or len(os.sched_getaffinity(0)))
        if self.net.load_param(self.param) != 0 or self.net.load_model(self.weights) != 0:
            raise ValueError(f"{self.param}: ncnn could not load it (with {self.weights})")
        self._ncnn = ncnn

    def forward(self, batch):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        rows = []
        for image in batch:
            with self.net.create_extractor() as ex:
                ex.input(self.input_name, self._ncnn.Mat(image))
                _, out = ex.extract(self.output_name)
                rows.append(np.array(out).reshape(-1))
        return as_points(np.stack(rows))


def load(backend, files, size=None, output=None):
    """A backend net. files: (deploy, weights) for caffe and opencv, (onnx,) for onnxruntime,
    (param, bin) for ncnn (which also needs `size`, the input side: ncnn files do not store it)."""
    reason = unavailable(backend)
    if reason:
        raise ValueError(reason)
    files = [str(f) for f in files]
    if backend == "caffe":
        return CaffeNet(*files, output=output)
    if backend == "opencv":
        return OpenCVNet(*files, output=output)
    if backend == "onnxruntime":
        return OnnxNet(*files)
    return NcnnNet(*files, size=size or 48)


class CaffeGraph:
    """Any deploy net with named outputs and a free input shape (MTCNN's nets) in our Caffe:
    `run(batch, outputs)` reshapes the input to the batch and returns the named blobs, copied."""
    backend = "caffe"

    def __init__(self, deploy, weights):
        import caffe

        check_caffe_model(deploy, weights)
        self.deploy, self.weights = str(deploy), str(weights)
        with tempfile.TemporaryDirectory() as tmp:  # old-style inputs as Input layers: no upgrade warning
            upgraded = write_prototxt(with_input_layers(read_net(deploy)), Path(tmp) / "deploy.prototxt")
            self.net = caffe.Net(str(upgraded), caffe.TEST, weights=self.weights)
        self.input = self.net.inputs[0]

    def run(self, batch, outputs):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if not batch.shape[0]:  # Caffe divides by the batch size: an empty one would kill the process
            raise ValueError(f"{self.deploy}: an empty batch")
        blob = self.net.blobs[self.input]
        if blob.data.shape != batch.shape:
            blob.reshape(*batch.shape)
            self.net.reshape()
        blob.data[...] = batch
        self.net.forward()
        return [self.net.blobs[name].data.copy() for name in outputs]


class OpenCVGraph:
    """The same in OpenCV's dnn (which reshapes the net to each input itself)."""
    backend = "opencv"

    def __init__(self, deploy, weights):
        check_caffe_model(deploy, weights)
        self.deploy, self.weights = str(deploy), str(weights)
        self.net = cv2.dnn.readNetFromCaffe(self.deploy, self.weights)
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)

    def run(self, batch, outputs):
        self.net.setInput(np.ascontiguousarray(batch, dtype=np.float32))
        return [np.array(out) for out in self.net.forward(list(outputs))]


class OnnxGraph:
    """The same from an .onnx file whose input and outputs keep the Caffe blob names (as
    landmarks.deploy.onnx_export.graph_to_onnx writes them), in ONNX Runtime on the CPU."""
    backend = "onnxruntime"

    def __init__(self, path, threads=None):
        self.path, self.session = str(path), _onnx_session(path, threads)
        self.input = self.session.get_inputs()[0].name

    def run(self, batch, outputs):
        if not np.asarray(batch).shape[0]:
            raise ValueError(f"{self.path}: an empty batch")
        return self.session.run(list(outputs), {self.input: np.ascontiguousarray(batch, dtype=np.float32)})


GRAPH_BACKENDS = {"caffe": CaffeGraph, "opencv": OpenCVGraph, "onnxruntime": OnnxGraph}
GRAPH_FILES = {"caffe": ("deploy prototxt", "caffemodel"), "opencv": ("deploy prototxt", "caffemodel"),
               "onnxruntime": (".onnx",)}


def load_graph(backend, *files):
    """A net with named outputs and a free input shape (`run(batch, outputs) -> [arrays]`), in
    `backend`: caffe or opencv from (deploy, weights), the Caffe files as they are; onnxruntime
    from (onnx,)."""
    if backend not in GRAPH_BACKENDS:
        raise ValueError(f"backend {backend!r} cannot run these nets; choose from {', '.join(GRAPH_BACKENDS)}")
    reason = unavailable(backend)
    if reason:
        raise ValueError(reason)
    if len(files) != len(GRAPH_FILES[backend]):
        raise ValueError(f"backend {backend} runs a net from {' + '.join(GRAPH_FILES[backend])}, "
                         f"got {len(files)} file(s)")
    return GRAPH_BACKENDS[backend](*files)


def load_exported(name, level_dir):
    """A backend net from one level's export folder; `name` is a key of EXPORT_FILES."""
    level_dir = Path(level_dir)
    record_path = level_dir / "export.json"
    if not record_path.is_file():
        raise FileNotFoundError(f"{record_path}: no such file (run tools/export.py first)")
    record = json.loads(record_path.read_text())
    key = EXPORT_FILES.get(name)
    if key is None:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(EXPORT_FILES)}")
    files = record["files"].get(key)
    if not files:
        raise ValueError(f"{level_dir}: no {name} files ({record['skipped'].get(key, 'not written')})")
    return load(name.replace("-int8", ""), [level_dir / Path(f).name for f in files], size=record["input_size"])
