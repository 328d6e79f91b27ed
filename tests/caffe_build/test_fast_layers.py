"""Our faster CPU BatchNorm, Scale and ReLU (registered under the stock type names) against the
untouched stock code (registered as StockBatchNorm, StockScale, StockReLU): forward, backward,
parameter gradients and BatchNorm's running statistics, TRAIN and TEST phase, in place and
not; then whole level-1 nets, ours against stock, and the authors' deploy format."""
import caffe
import numpy as np
import pytest
from caffe import layers as L

from landmarks.common.protoio import write_prototxt
from landmarks.nets import mobilenet as nets
from landmarks.train import bench as train_bench

caffe.set_mode_cpu()
TOL = 1e-5


def rel_err(actual, expected):
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12))


def _layer_net(tmp_path, name, kind, shape, in_place, phase, seed):
    """data -> [optional Scale to make BN's input non-trivial] -> the layer under test -> out."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=list(shape)))
    n.pre = L.Power(n.data, power_param=dict(scale=1.0))  # a real layer below, so diffs flow
    params = {}
    if kind.endswith("BatchNorm"):
        params = dict(batch_norm_param=dict(moving_average_fraction=0.9))
    elif kind.endswith("Scale"):
        params = dict(scale_param=dict(bias_term=True, filler=dict(type="gaussian", std=1),
                                       bias_filler=dict(type="gaussian", std=1)))
    elif kind.endswith("ReLU"):
        params = dict(relu_param=dict(negative_slope=0.1 if "leaky" in name else 0.0))
    layer = getattr(L, kind)(n.pre, in_place=in_place, **params)
    n.out = layer
    if in_place:
        n.out = L.Power(layer, power_param=dict(scale=1.0))  # the in-place layer's top is "pre"
    proto = n.to_proto()
    proto.force_backward = True
    path = tmp_path / f"{name}_{kind}_{in_place}_{phase}.prototxt"
    write_prototxt(proto, path)
    caffe.set_random_seed(seed)
    return caffe.Net(str(path), phase)


def _run(net, x, dy, passes):
    outs = []
    for _ in range(passes):  # BatchNorm's running statistics move with every TRAIN pass
        net.blobs["data"].data[...] = x
        net.forward()
        for blob in net.params.get(_tested(net), []):
            blob.diff[...] = 0
        net.blobs["out"].diff[...] = dy
        net.backward()
        outs.append((net.blobs["out"].data.copy(), net.blobs["data"].diff.copy()))
    params = [(b.data.copy(), b.diff.copy()) for b in net.params.get(_tested(net), [])]
    return outs, params


def _tested(net):
    return [name for name in net.params][0] if net.params else None


SHAPES = [(4, 3, 5, 7), (2, 16, 24, 24), (128, 192, 3, 3), (1, 8, 1, 1)]


@pytest.mark.parametrize("kind", ["BatchNorm", "Scale", "ReLU", "leaky-ReLU"])
@pytest.mark.parametrize("phase", [caffe.TRAIN, caffe.TEST], ids=["train", "test"])
@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "separate"])
@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
def test_ours_matches_the_stock_layer(tmp_path, kind, phase, in_place, shape):
    layer = kind.split("-")[-1]
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 3 + 1.5).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    ours = _layer_net(tmp_path, kind, layer, shape, in_place, phase, 3)
    stock = _layer_net(tmp_path, kind, "Stock" + layer, shape, in_place, phase, 3)
    if layer == "BatchNorm" and phase == caffe.TEST:  # global statistics as a trained model has
        for net in (ours, stock):
            bn = net.params[_tested(net)]
            bn[0].data[...] = np.linspace(-2, 2, shape[1]) * 9.0
            bn[1].data[...] = np.linspace(0.5, 4, shape[1]) * 9.0
            bn[2].data[...] = 9.0
    for mine, theirs in zip(ours.params.get(_tested(ours), []), stock.params.get(_tested(stock), [])):
        theirs.data[...] = mine.data  # the same parameters on both sides
    (a_outs, a_params), (b_outs, b_params) = _run(ours, x, dy, 3), _run(stock, x, dy, 3)
    for step, ((ay, adx), (by, bdx)) in enumerate(zip(a_outs, b_outs)):
        assert rel_err(ay, by) < TOL, f"forward, pass {step}"
        assert rel_err(adx, bdx) < TOL, f"input gradient, pass {step}"
    for i, ((ad, ag), (bd, bg)) in enumerate(zip(a_params, b_params)):
        assert rel_err(ad, bd) < TOL, f"parameter blob {i} (running statistics for BatchNorm)"
        if np.abs(bg).max() > 0:
            assert rel_err(ag, bg) < TOL, f"parameter gradient {i}"


def test_stock_names_create_our_classes_and_the_stock_ones_remain():
    names = caffe.layer_type_list()
    for kind in ("BatchNorm", "Scale", "ReLU", "StockBatchNorm", "StockScale", "StockReLU"):
        assert kind in names


def _level1_pair(tmp_path, depthwise):
    data = train_bench.write_data(tmp_path, samples=16)
    cfg = nets.NetConfig(depthwise=depthwise)
    result = {}
    for side in ("ours", "stock"):
        net = nets.train_test_net(cfg, "hdf5", (data,), (data,), 8, 8, "level1")
        for layer in net.layer:  # HDF5Data shuffles with std::rand: the same rows on both sides
            if layer.type == "HDF5Data":
                layer.hdf5_data_param.shuffle = False
        if side == "stock":
            net = train_bench.stock_net(net)
        path = tmp_path / f"{side}_{depthwise}.prototxt"
        write_prototxt(net, path)
        caffe.set_random_seed(11)
        result[side] = caffe.Net(str(path), caffe.TRAIN)
    for name, blobs in result["ours"].params.items():
        for mine, theirs in zip(blobs, result["stock"].params[name]):
            theirs.data[...] = mine.data
    return result


@pytest.mark.parametrize("depthwise", ["layer", "group"])
def test_whole_level1_train_net_matches_stock(tmp_path, depthwise):
    pair = _level1_pair(tmp_path, depthwise)
    losses, grads = {}, {}
    for side, net in pair.items():
        caffe.set_random_seed(5)  # the same dropout mask on both sides
        net.clear_param_diffs()
        losses[side] = float(net.forward()["loss"])
        net.backward()
        grads[side] = {name: [b.diff.copy() for b in blobs] for name, blobs in net.params.items()}
    assert abs(losses["ours"] - losses["stock"]) <= TOL * abs(losses["stock"])
    # Some gradients are zero in exact arithmetic (a Scale bias feeding a 1x1 convolution and
    # then a batch-statistics BatchNorm, which removes any per-channel shift): both sides give
    # float rounding noise there. So each blob is held to 1e-5 of the net's largest gradient,
    # and the blobs that carry real signal (over 1e-3 of it) to 1e-5 of their own largest value.
    largest = max(np.abs(g).max() for blobs in grads["stock"].values() for g in blobs)
    for name, stock_grads in grads["stock"].items():
        for i, g in enumerate(stock_grads):
            diff = np.abs(grads["ours"][name][i] - g).max()
            assert diff <= TOL * largest, f"{name}[{i}]: {diff:.2e} against the net's largest gradient {largest:.2e}"
            if np.abs(g).max() >= 1e-3 * largest:
                assert rel_err(grads["ours"][name][i], g) < TOL, f"{name}[{i}]"
    for name in pair["stock"].params:
        if name.endswith("/bn"):  # running statistics; a mean is judged on its channel's spread
            (m_a, v_a, n_a), (m_b, v_b, n_b) = [[b.data for b in pair[side].params[name]] for side in ("ours", "stock")]
            assert rel_err(v_a, v_b) < TOL and rel_err(n_a, n_b) < TOL, name
            assert np.all(np.abs(m_a - m_b) <= TOL * np.sqrt(v_b) + 1e-12), name


def test_deploy_net_with_trained_statistics_matches_stock(tmp_path):
    """The released models' format: a deploy net with BatchNorm global statistics."""
    x = np.random.default_rng(3).uniform(-127.5, 127.5, (4, 3, 48, 48)).astype(np.float32)
    outputs = {}
    for side in ("ours", "stock"):
        param = nets.deploy_net(nets.NetConfig(), "level1", batch=4)
        if side == "stock":
            param = train_bench.stock_net(param)
        path = tmp_path / f"deploy_{side}.prototxt"
        write_prototxt(param, path)
        caffe.set_random_seed(2)
        net = caffe.Net(str(path), caffe.TEST)
        layer_rng = np.random.default_rng(4)
        for name, blobs in net.params.items():
            if name.endswith("/bn"):
                c = blobs[0].data.shape[0]
                blobs[0].data[...] = layer_rng.standard_normal(c)
                blobs[1].data[...] = layer_rng.uniform(0.5, 2, c)
                blobs[2].data[...] = 1
            else:
                for b in blobs:
                    b.data[...] = layer_rng.standard_normal(b.data.shape) * 0.2
        net.blobs["data"].data[...] = x
        outputs[side] = net.forward()["fc2"].copy()
    assert rel_err(outputs["ours"], outputs["stock"]) < TOL
