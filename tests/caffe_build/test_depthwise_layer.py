"""ConvolutionDepthwise against stock Convolution with group == C, and a finite-difference check."""
import itertools
import os
import subprocess
import sys

import caffe
import numpy as np
import pytest
from caffe import layers as L

from landmarks.common.protoio import write_prototxt

caffe.set_mode_cpu()


def _net(tmp_path, name, shape, layer_type, kernel, stride, pad, bias, dilation=1, num_output=None):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=list(shape)))
    conv_param = dict(num_output=num_output or shape[1], kernel_size=kernel, stride=stride, pad=pad,
                      dilation=dilation, bias_term=bias, weight_filler=dict(type="gaussian", std=0.5),
                      bias_filler=dict(type="gaussian", std=0.5))
    if layer_type == "group":
        n.out = L.Convolution(n.data, convolution_param=dict(conv_param, group=shape[1]))
    else:
        n.out = L.ConvolutionDepthwise(n.data, convolution_param=conv_param)
    proto = n.to_proto()
    proto.force_backward = True
    path = tmp_path / f"{name}.prototxt"
    write_prototxt(proto, path)
    return caffe.Net(str(path), caffe.TRAIN)


def _forward_backward(net, x, top_diff):
    net.blobs["data"].data[...] = x
    net.forward()
    out = net.blobs["out"].data.copy()
    for blob in net.params["out"]:
        blob.diff[...] = 0
    net.blobs["out"].diff[...] = top_diff
    net.backward()
    return out, net.blobs["data"].diff.copy(), [b.diff.copy() for b in net.params["out"]]


def _assert_close(actual, expected, what):
    scale = max(np.abs(expected).max(), 1e-6)
    err = np.abs(actual - expected).max() / scale
    assert err < 1e-5, f"{what}: max relative error {err:.2e}"


CASES = [
    # (batch, channels, height, width), kernel, stride, pad, bias
    ((1, 3, 9, 9), 3, 1, 1, True),
    ((7, 4, 10, 13), 3, 2, 1, False),
    ((7, 5, 11, 8), 5, 1, 0, True),
    ((1, 2, 12, 7), 5, 2, 1, False),
    ((2, 6, 6, 6), 3, 2, 0, True),
    ((1, 3, 8, 11), 3, 1, 0, False),
    ((7, 3, 7, 9), 5, 2, 0, True),
    ((2, 4, 13, 10), 3, 1, 1, False),
    # eight channels and more: the AVX2 path's whole groups (8-pixel transposes across row
    # ends, and the rest of a plane) next to a part group
    ((3, 20, 9, 11), 3, 1, 1, True),
    ((2, 16, 12, 12), 3, 2, 1, False),
    ((4, 24, 6, 6), 3, 1, 1, True),
    ((1, 9, 3, 3), 3, 1, 1, False),
    ((2, 17, 24, 24), 3, 2, 1, True),
    ((2, 12, 10, 7), 5, 1, 2, True),
]


@pytest.mark.parametrize("shape,kernel,stride,pad,bias", CASES)
def test_matches_group_convolution(tmp_path, rng, shape, kernel, stride, pad, bias):
    ours = _net(tmp_path, "ours", shape, "layer", kernel, stride, pad, bias)
    stock = _net(tmp_path, "stock", shape, "group", kernel, stride, pad, bias)
    assert ours.layers[1].type == "ConvolutionDepthwise"
    assert ours.params["out"][0].data.shape == (shape[1], 1, kernel, kernel)
    assert len(ours.params["out"]) == (2 if bias else 1)
    for mine, theirs in zip(ours.params["out"], stock.params["out"]):
        theirs.data[...] = mine.data
    x = rng.standard_normal(shape).astype(np.float32)
    top_diff = rng.standard_normal(ours.blobs["out"].data.shape).astype(np.float32)
    assert ours.blobs["out"].data.shape == stock.blobs["out"].data.shape
    out_a, dx_a, dp_a = _forward_backward(ours, x, top_diff)
    out_b, dx_b, dp_b = _forward_backward(stock, x, top_diff)
    _assert_close(out_a, out_b, "forward")
    _assert_close(dx_a, dx_b, "gradient to the input")
    _assert_close(dp_a[0], dp_b[0], "gradient to the weights")
    if bias:
        _assert_close(dp_a[1], dp_b[1], "gradient to the bias")


def test_dilation_matches_group_convolution(tmp_path, rng):
    shape = (2, 3, 11, 12)
    ours = _net(tmp_path, "ours", shape, "layer", 3, 1, 2, True, dilation=2)
    stock = _net(tmp_path, "stock", shape, "group", 3, 1, 2, True, dilation=2)
    for mine, theirs in zip(ours.params["out"], stock.params["out"]):
        theirs.data[...] = mine.data
    x = rng.standard_normal(shape).astype(np.float32)
    top_diff = rng.standard_normal(ours.blobs["out"].data.shape).astype(np.float32)
    for a, b in zip(_forward_backward(ours, x, top_diff)[:2], _forward_backward(stock, x, top_diff)[:2]):
        _assert_close(a, b, "dilated")


def test_parameter_gradients_accumulate(tmp_path, rng):
    """Caffe layers add to parameter diffs (the solver clears them); ours must too."""
    shape = (2, 3, 6, 6)
    net = _net(tmp_path, "acc", shape, "layer", 3, 1, 1, True)
    x = rng.standard_normal(shape).astype(np.float32)
    top_diff = rng.standard_normal(net.blobs["out"].data.shape).astype(np.float32)
    _, _, once = _forward_backward(net, x, top_diff)
    net.backward()  # a second backward without clearing
    for blob, single in zip(net.params["out"], once):
        np.testing.assert_allclose(blob.diff, 2 * single, rtol=1e-5, atol=1e-6)


def test_finite_difference_gradients(tmp_path, rng):
    """loss = sum(top * R) is linear in the input and in the weights, so central differences
    are exact up to float rounding: a wrong backward cannot hide in the tolerance."""
    shape = (2, 2, 5, 6)
    net = _net(tmp_path, "fd", shape, "layer", 3, 2, 1, True)
    x = rng.standard_normal(shape).astype(np.float32)
    r = rng.standard_normal(net.blobs["out"].data.shape).astype(np.float32)

    def loss():
        net.forward()
        return float((net.blobs["out"].data.astype(np.float64) * r).sum())

    net.blobs["data"].data[...] = x
    _, dx, dparams = _forward_backward(net, x, r)
    eps = 1e-2
    targets = [("input", net.blobs["data"].data, dx)] + [
        (f"param{i}", blob.data, grad) for i, (blob, grad) in enumerate(zip(net.params["out"], dparams))]
    for what, array, analytic in targets:
        flat = array.reshape(-1)
        for index in itertools.islice(rng.permutation(flat.size), 25):
            saved = flat[index]
            flat[index] = saved + eps
            up = loss()
            flat[index] = saved - eps
            down = loss()
            flat[index] = saved
            numeric = (up - down) / (2 * eps)
            assert abs(numeric - analytic.reshape(-1)[index]) < 1e-3 * max(1.0, abs(numeric)), \
                f"{what}[{index}]: numeric {numeric:.6f} vs analytic {analytic.reshape(-1)[index]:.6f}"


def test_num_output_must_match_channels(tmp_path):
    with pytest.raises(ValueError, match=r"num_output \(6\) must equal the input channels \(4\)"):
        _net(tmp_path, "bad", (1, 4, 8, 8), "layer", 3, 1, 1, False, num_output=6)


def test_group_field_is_ignored(tmp_path, rng):
    """The released prototxts give no group; a stray group must not change the result."""
    shape = (1, 4, 7, 7)
    plain = _net(tmp_path, "plain", shape, "layer", 3, 1, 1, False)
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=list(shape)))
    n.out = L.ConvolutionDepthwise(n.data, convolution_param=dict(num_output=4, kernel_size=3, pad=1,
                                                                 group=2, bias_term=False))
    path = tmp_path / "grouped.prototxt"
    write_prototxt(n.to_proto(), path)
    grouped = caffe.Net(str(path), caffe.TEST)
    assert grouped.params["out"][0].data.shape == (4, 1, 3, 3)
    grouped.params["out"][0].data[...] = plain.params["out"][0].data
    x = rng.standard_normal(shape).astype(np.float32)
    for net in (plain, grouped):
        net.blobs["data"].data[...] = x
        net.forward()
    np.testing.assert_array_equal(plain.blobs["out"].data, grouped.blobs["out"].data)


def test_the_sse_path_matches_too():
    """The AVX2 code is chosen where the CPU has it; the baseline SSE code (any x86-64) must
    agree as well, so the comparisons above run again with it forced."""
    env = dict(os.environ, CAFFE_EXT_DEPTHWISE_ISA="sse")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                           "-k", "matches_group or dilation or accumulate or finite"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
