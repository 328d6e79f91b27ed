"""Owns the ONNX form of a folded Caffe deploy model (landmarks.deploy.fold's output), built with the
`onnx` package, and its int8 version through onnxruntime's static quantisation.

The graph has one input `data` (N x 3 x S x S float32, N free) and one output named after the
Caffe output blob (`fc2`). Layers covered: Input, Convolution (any group), ReLU (with
negative_slope), Eltwise (SUM with coefficients, PROD, MAX), InnerProduct, Pooling (MAX/AVE),
Dropout (dropped), Split (aliases), BatchNorm + Scale left unfolded. Anything else is refused
by name. Caffe's in-place blobs become fresh ONNX value names, so the graph is in SSA form.
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

    def fresh(self, name):
        self.count += 1
        return f"{name}__{self.count}"

    def const(self, name, array):
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
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


def to_onnx(deploy, weights, output=None):
    """An onnx.ModelProto of a deploy prototxt + caffemodel (best: landmarks.deploy.fold's output)."""
    import onnx

    net, params = read_net(deploy), read_weights(weights)
    b = _Builder(onnx)
    name, shape = _input_shape(net)
    b.current[name] = "data"
    graph_input = onnx.helper.make_tensor_value_info("data", onnx.TensorProto.FLOAT, ["N"] + shape[1:])
    last = name
    for layer in net.layer:
        ins = [b.current[x] for x in layer.bottom] if layer.type != "Input" else []
        if layer.type == "Input":
            continue
        if layer.type in ("Convolution", DEPTHWISE_TYPE):
            _convolution(b, layer, params, ins[0])
        elif layer.type == "ReLU":
            slope = float(layer.relu_param.negative_slope)
            if slope:
                b.node("LeakyRelu", ins, layer.top[0], layer.name, alpha=slope)
            else:
                b.node("Relu", ins, layer.top[0], layer.name)
        elif layer.type == "Eltwise":
            _eltwise(b, layer, ins)
        elif layer.type == "InnerProduct":
            _inner_product(b, layer, params, ins[0])
        elif layer.type == "Pooling":
            p = layer.pooling_param
            if p.global_pooling:
                b.node("GlobalMaxPool" if p.pool == 0 else "GlobalAveragePool", ins, layer.top[0], layer.name)
            else:
                raise ModelError(f"Pooling {layer.name}: only global pooling is exported")
        elif layer.type in ("Dropout", "Split"):
            for top in layer.top:
                b.current[top] = ins[0]
        elif layer.type == "BatchNorm":
            _batchnorm(b, layer, params, ins[0])
        elif layer.type == "Scale" and len(layer.bottom) == 1:
            _scale(b, layer, params, ins[0])
        else:
            raise ModelError(f"{deploy}: layer {layer.name} of type {layer.type} is not exported to ONNX")
        last = layer.top[0]
    output = output or ("fc2" if "fc2" in b.current else last)
    final = b.current[output]
    # the graph output keeps the Caffe blob's name
    b.nodes.append(onnx.helper.make_node("Identity", [final], [output], name=f"{output}/output"))
    count = params[[l.name for l in net.layer if output in l.top][-1]][0].shape[0]
    graph_output = onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, ["N", int(count)])
    graph = onnx.helper.make_graph(b.nodes, net.name or "landmarks", [graph_input], [graph_output], b.inits)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="landmarks.deploy.onnx_export")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


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
