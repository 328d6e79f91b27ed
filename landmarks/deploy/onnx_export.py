"""Owns the ONNX form of a folded Caffe deploy model (landmarks.deploy.fold's output), built with the
`onnx` package, and its int8 version through onnxruntime's static quantisation.

`to_onnx` (the landmark nets): one input `data` (N x 3 x S x S float32, N free) and one output
named after the Caffe output blob (`fc2`). `graph_to_onnx` (any covered net, e.g. MTCNN's): the
input and every terminal blob under their Caffe names, N, H and W free. Layers covered: Input
(or old-style `input:` fields), Convolution (any group), ReLU (with negative_slope), PReLU,
Eltwise (SUM with coefficients, PROD, MAX), InnerProduct, Pooling (global MAX/AVE; windowed MAX,
rounded up as Caffe does), Softmax, Slice, Concat, Dropout (dropped), Split (aliases), BatchNorm
+ Scale left unfolded. Anything else is refused by name. Caffe's in-place blobs become fresh ONNX value names, so the graph is in SSA form.
"""
import contextlib
import io
import logging

import numpy as np

from landmarks.common.protoio import DEPTHWISE_TYPE, ModelError, read_net
from landmarks.deploy.fold import read_weights

OPSET = 13  # old enough for pnnx, ncnn and OpenCV's ONNX reader; has everything used here
IR_VERSION = 7  # the IR version that goes with opset 13


def _input_shape(net):
    for layer in net.layer:
        if layer.type == "Input" and layer.input_param.shape:
            return layer.top[0], [int(d) for d in layer.input_param.shape[0].dim]
    if net.input:
        dims = net.input_shape[0].dim if net.input_shape else net.input_dim[:4]
        return net.input[0], [int(d) for d in dims]
    raise ModelError("the net declares no input")


def _pair(values, single, default):
    """Caffe's repeated kernel/stride/pad fields (or the _h/_w ones) as [h, w]."""
    if len(values) == 0:
        return [int(single[0]), int(single[1])] if single[0] or single[1] else [default, default]
    return [int(values[0]), int(values[-1])]


class _Builder:
    def __init__(self, onnx):
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes, self.inits, self.current, self.count = [], [], {}, 0
        self.rank = {}  # Caffe blob -> its number of axes (PReLU's slope shape depends on it)

    def fresh(self, name):
        self.count += 1
        return f"{name}__{self.count}"

    def const(self, name, array):
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def int_const(self, name, values):
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
        return name

    def node(self, op, inputs, top, name, **attrs):
        out = self.fresh(top)
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=name, **attrs))
        self.current[top] = out
        return out


def _convolution(b, layer, params, x):
    p = layer.convolution_param
    kernel = _pair(p.kernel_size, (p.kernel_h, p.kernel_w), 1)
    stride = _pair(p.stride, (p.stride_h, p.stride_w), 1)
    pad = _pair(p.pad, (p.pad_h, p.pad_w), 0)
    dilation = _pair(p.dilation, (0, 0), 1)
    blobs = params[layer.name]
    inputs = [x, b.const(f"{layer.name}.weight", blobs[0])]
    if p.bias_term:
        inputs.append(b.const(f"{layer.name}.bias", blobs[1].reshape(-1)))
    group = int(p.num_output) if layer.type == DEPTHWISE_TYPE else max(1, int(p.group))
    return b.node("Conv", inputs, layer.top[0], layer.name, kernel_shape=kernel, strides=stride,
                  pads=[pad[0], pad[1], pad[0], pad[1]], dilations=dilation, group=group)


def _inner_product(b, layer, params, x):
    p = layer.inner_product_param
    if p.axis != 1 or p.transpose:
        raise ModelError(f"InnerProduct {layer.name}: only axis 1 without transpose is exported")
    blobs = params[layer.name]
    flat = b.fresh(f"{layer.name}_flat")
    b.nodes.append(b.helper.make_node("Flatten", [x], [flat], name=f"{layer.name}/flatten", axis=1))
    weight = blobs[0].reshape(blobs[0].shape[0], -1)
    inputs = [flat, b.const(f"{layer.name}.weight", weight)]
    if p.bias_term:
        inputs.append(b.const(f"{layer.name}.bias", blobs[1].reshape(-1)))
    return b.node("Gemm", inputs, layer.top[0], layer.name, transB=1)


def _eltwise(b, layer, inputs):
    p = layer.eltwise_param
    op = {0: "Mul", 1: "Add", 2: "Max"}[p.operation]
    if op == "Add" and len(p.coeff) and any(c != 1 for c in p.coeff):
        inputs = [b.node("Mul", [x, b.const(f"{layer.name}.coeff{k}", np.float32(c))], f"{layer.name}_c{k}",
                         f"{layer.name}/coeff{k}") for k, (x, c) in enumerate(zip(inputs, p.coeff))]
    out = inputs[0]
    for k, other in enumerate(inputs[1:]):
        out = b.node(op, [out, other], layer.top[0], layer.name if k == len(inputs) - 2 else f"{layer.name}/{k}")
    return out


def _batchnorm(b, layer, params, x, scale=None):
    from landmarks.deploy.fold import _bn_scale

    mean, var = _bn_scale(layer, params[layer.name])
    gamma, beta = np.ones_like(mean), np.zeros_like(mean)
    return b.node("BatchNormalization", [x, b.const(f"{layer.name}.gamma", gamma), b.const(f"{layer.name}.beta", beta),
                                         b.const(f"{layer.name}.mean", mean), b.const(f"{layer.name}.var", var)],
                  layer.top[0], layer.name, epsilon=float(layer.batch_norm_param.eps))


def _scale(b, layer, params, x):
    blobs = params[layer.name]
    shape = (-1, 1, 1)
    out = b.node("Mul", [x, b.const(f"{layer.name}.gamma", blobs[0].reshape(shape))], layer.top[0], f"{layer.name}/mul")
    if len(blobs) > 1:
        out = b.node("Add", [out, b.const(f"{layer.name}.beta", blobs[1].reshape(shape))], layer.top[0], layer.name)
    return out


def _prelu(b, layer, params, x):
    slope = params[layer.name][0].reshape(-1)
    if b.rank.get(layer.bottom[0], 4) == 4:
        slope = slope.reshape(-1, 1, 1)  # ONNX broadcasts from the right: one slope per channel
    return b.node("PRelu", [x, b.const(f"{layer.name}.slope", slope)], layer.top[0], layer.name)


def _pooling(b, layer, x):
    p = layer.pooling_param
    if p.global_pooling:
        return b.node("GlobalMaxPool" if p.pool == 0 else "GlobalAveragePool", [x], layer.top[0], layer.name)
    if p.pool != 0:
        raise ModelError(f"Pooling {layer.name}: only MAX (or global) pooling is exported; Caffe's average over "
                         "windows that overhang the input has no ONNX equal")
    kernel = _pair([p.kernel_size] if p.kernel_size else [], (p.kernel_h, p.kernel_w), 1)
    stride = _pair([p.stride] if p.HasField("stride") else [], (p.stride_h, p.stride_w), 1)
    pad = _pair([p.pad] if p.pad else [], (p.pad_h, p.pad_w), 0)
    # Caffe rounds a pooled size up (the last window may overhang the input): ceil_mode
    return b.node("MaxPool", [x], layer.top[0], layer.name, kernel_shape=kernel, strides=stride,
                  pads=[pad[0], pad[1], pad[0], pad[1]], ceil_mode=1)


def _slice(b, layer, x):
    p = layer.slice_param
    axis = int(p.axis if p.HasField("axis") else p.slice_dim if p.HasField("slice_dim") else 1)
    if len(p.slice_point) != len(layer.top) - 1:
        raise ModelError(f"Slice {layer.name}: exported only with a slice_point per cut "
                         f"({len(layer.top)} tops, {len(p.slice_point)} points)")
    edges = [0] + [int(v) for v in p.slice_point] + [2 ** 62]
    for k, top in enumerate(layer.top):
        bounds = [b.int_const(f"{layer.name}.{which}{k}", [value]) for which, value in
                  (("start", edges[k]), ("end", edges[k + 1]), ("axis", axis))]
        b.node("Slice", [x] + bounds, top, f"{layer.name}/{k}")
        b.rank[top] = b.rank.get(layer.bottom[0], 4)


def _layer(b, layer, params, ins, source):
    """Appends one Caffe layer's ONNX nodes (its tops then name their values)."""
    if layer.type in ("Convolution", DEPTHWISE_TYPE):
        _convolution(b, layer, params, ins[0])
    elif layer.type == "ReLU":
        slope = float(layer.relu_param.negative_slope)
        if slope:
            b.node("LeakyRelu", ins, layer.top[0], layer.name, alpha=slope)
        else:
            b.node("Relu", ins, layer.top[0], layer.name)
    elif layer.type == "PReLU":
        _prelu(b, layer, params, ins[0])
    elif layer.type == "Eltwise":
        _eltwise(b, layer, ins)
    elif layer.type == "InnerProduct":
        _inner_product(b, layer, params, ins[0])
        b.rank[layer.top[0]] = 2
    elif layer.type == "Pooling":
        _pooling(b, layer, ins[0])
    elif layer.type == "Softmax":
        axis = int(layer.softmax_param.axis)
        b.node("Softmax", ins, layer.top[0], layer.name, axis=axis)  # opset 13: over that one axis, as Caffe
    elif layer.type == "Slice":
        _slice(b, layer, ins[0])
    elif layer.type == "Concat":
        b.node("Concat", ins, layer.top[0], layer.name, axis=int(layer.concat_param.axis))
    elif layer.type in ("Dropout", "Split"):
        for top in layer.top:
            b.current[top] = ins[0]
    elif layer.type == "BatchNorm":
        _batchnorm(b, layer, params, ins[0])
    elif layer.type == "Scale" and len(layer.bottom) == 1:
        _scale(b, layer, params, ins[0])
    else:
        raise ModelError(f"{source}: layer {layer.name or '(unnamed)'} of type {layer.type} is not exported to ONNX")
    for top in layer.top:
        b.rank.setdefault(top, b.rank.get(layer.bottom[0], 4) if layer.bottom else 4)


def _named(net):
    """The net's layers, each with a name (Caffe allows none; ONNX nodes and weights need one)."""
    for k, layer in enumerate(net.layer):
        if not layer.name:
            layer.name = f"{layer.type.lower()}{k}"
    return net


def _build(onnx, net, params, input_name, source):
    """A _Builder holding every layer of `net` after its input (named input_name in the graph),
    and the Caffe blobs in the order they were produced."""
    b = _Builder(onnx)
    name, shape = _input_shape(net)
    b.current[name], b.rank[name] = input_name, len(shape)
    produced = []
    for layer in net.layer:
        if layer.type == "Input":
            continue
        missing = [x for x in layer.bottom if x not in b.current]
        if missing:
            raise ModelError(f"{source}: layer {layer.name} reads {missing[0]}, which nothing before it writes")
        _layer(b, layer, params, [b.current[x] for x in layer.bottom], source)
        produced += [top for top in layer.top if top not in produced]
    return b, name, shape, produced


def _model(onnx, b, name, inputs, outputs):
    graph = onnx.helper.make_graph(b.nodes, name, inputs, outputs, b.inits)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="landmarks.deploy.onnx_export")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _output(onnx, b, blob):
    """The graph output of Caffe blob `blob`, under the blob's own name."""
    b.nodes.append(onnx.helper.make_node("Identity", [b.current[blob]], [blob], name=f"{blob}/output"))


def to_onnx(deploy, weights, output=None):
    """An onnx.ModelProto of a deploy prototxt + caffemodel (best: landmarks.deploy.fold's output):
    input `data` (N free), one output (`output`, else fc2, else the last blob)."""
    import onnx

    net, params = _named(read_net(deploy)), read_weights(weights)
    b, _, shape, produced = _build(onnx, net, params, "data", deploy)
    output = output or ("fc2" if "fc2" in b.current else produced[-1])
    _output(onnx, b, output)
    count = params[[l.name for l in net.layer if output in l.top][-1]][0].shape[0]
    return _model(onnx, b, net.name or "landmarks",
                  [onnx.helper.make_tensor_value_info("data", onnx.TensorProto.FLOAT, ["N"] + shape[1:])],
                  [onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, ["N", int(count)])])


def graph_to_onnx(deploy, weights):
    """Any deploy net this module covers as ONNX, its interface kept: the input under its Caffe
    name with every dimension but the channels free (N, H, W), and every blob that no later layer
    reads (MTCNN's probabilities, box offsets and points) a graph output under its Caffe name."""
    import onnx

    net, params = _named(read_net(deploy)), read_weights(weights)
    name = _input_shape(net)[0]
    b, name, shape, produced = _build(onnx, net, params, name, deploy)
    read = {x for layer in net.layer for x in layer.bottom if x not in layer.top}
    terminal = [blob for blob in produced if blob not in read and blob != name]
    for blob in terminal:
        _output(onnx, b, blob)
    free = ["N", int(shape[1]), "H", "W"][:len(shape)]
    # the input keeps its Caffe name: its value is that name until the first layer renames it
    return _model(onnx, b, net.name or "net",
                  [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, free)],
                  [onnx.helper.make_tensor_value_info(blob, onnx.TensorProto.FLOAT, ["N"] + [None] * (b.rank[blob] - 1))
                   for blob in terminal])


def export_graph(deploy, weights, out_path):
    """Writes graph_to_onnx's model (through a temporary name); returns out_path."""
    from landmarks.common.atomic import write_bytes

    write_bytes(out_path, graph_to_onnx(deploy, weights).SerializeToString())
    return out_path


def export_onnx(deploy, weights, out_path):
    """Writes the ONNX model (through a temporary name); returns out_path."""
    from landmarks.common.atomic import write_bytes

    write_bytes(out_path, to_onnx(deploy, weights).SerializeToString())
    return out_path


class _Calibration:
    """onnxruntime's CalibrationDataReader over preprocessed inputs, one at a time (its
    histogram calibration fails on batches of unequal size, e.g. a shorter last one)."""

    def __init__(self, inputs, batch=1):
        self.inputs, self.batch, self.position = np.asarray(inputs, dtype=np.float32), batch, 0

    def get_next(self):
        if self.position >= len(self.inputs):
            return None
        chunk = self.inputs[self.position:self.position + self.batch]
        self.position += self.batch
        return {"data": chunk}

    def rewind(self):
        self.position = 0


@contextlib.contextmanager
def _quiet():
    """onnxruntime's quantiser prints its calibration steps and a pre-processing hint (on the
    root logger): keep them off the tools' output."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def quantise_int8(onnx_path, out_path, calibration_inputs):
    """Static int8 quantisation (QDQ, per-channel int8 weights, uint8 activations, ranges at the
    0.001-99.999 percentiles (MinMax was 20% further from the float model on MTFL)
    of `calibration_inputs`: (N, 3, S, S) preprocessed images). Returns out_path."""
    import os
    import tempfile

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    folder = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp, _quiet():
        tmp_out = os.path.join(tmp, "int8.onnx")
        quantize_static(str(onnx_path), tmp_out, _Calibration(calibration_inputs), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.Percentile)
        os.replace(tmp_out, out_path)
    return out_path
