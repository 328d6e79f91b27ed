"""caffe_ext's WingLoss layer: its value against the formula of Feng et al. (2018), written
here independently in NumPy, and its gradient against finite differences, on both bottoms;
and a train net generated with loss="wing" that the real `caffe train` runs."""
import caffe
import numpy as np
import pytest
from caffe import layers as L

from landmarks.common.protoio import write_prototxt
from landmarks.nets import mobilenet as nets

caffe.set_mode_cpu()

W, EPSILON = 0.3, 0.06


def _net(tmp_path, shape, loss_weight=1.0):
    n = caffe.NetSpec()
    n.pred = L.Input(shape=dict(dim=list(shape)))
    n.label = L.Input(shape=dict(dim=list(shape)))
    n.loss = L.WingLoss(n.pred, n.label, loss_weight=loss_weight, wing_loss_param=dict(w=W, epsilon=EPSILON))
    proto = n.to_proto()
    proto.force_backward = True
    path = tmp_path / "wing.prototxt"
    write_prototxt(proto, path)
    return caffe.Net(str(path), caffe.TRAIN)


def _wing(x):
    """The loss of Feng et al. for differences x, summed over all but the batch axis, averaged."""
    a = np.abs(np.asarray(x, dtype=np.float64))
    c = W - W * np.log(1 + W / EPSILON)
    per = np.where(a < W, W * np.log(1 + a / EPSILON), a - c)
    return per.reshape(len(a), -1).sum(axis=1).mean()


@pytest.fixture
def differences(rng):
    # both sides of w, and a few exactly zero (the gradient there is taken as 0)
    pred = rng.uniform(-0.8, 0.8, size=(6, 10)).astype(np.float32)
    label = rng.uniform(-0.8, 0.8, size=(6, 10)).astype(np.float32)
    label[0, :3] = pred[0, :3]
    return pred, label


def test_value_matches_the_formula(tmp_path, differences):
    pred, label = differences
    net = _net(tmp_path, pred.shape, loss_weight=3.0)
    net.blobs["pred"].data[...] = pred
    net.blobs["label"].data[...] = label
    loss = float(net.forward()["loss"])  # the blob holds the loss itself; loss_weight scales its gradient
    assert loss == pytest.approx(_wing(pred - label), rel=1e-5)
    # both regimes are present, so neither branch alone could give this value
    a = np.abs(pred - label)
    assert (a < W).any() and (a > W).any()


def test_gradient_matches_finite_differences(tmp_path, differences):
    pred, label = differences
    net = _net(tmp_path, pred.shape, loss_weight=2.0)
    net.blobs["pred"].data[...] = pred
    net.blobs["label"].data[...] = label
    net.forward()
    net.backward()
    grads = {"pred": net.blobs["pred"].diff.copy(), "label": net.blobs["label"].diff.copy()}
    step = 1e-3
    for blob in ("pred", "label"):
        for i, j in [(1, 2), (2, 5), (3, 0), (4, 9), (5, 7)]:
            values = {"pred": pred.astype(np.float64), "label": label.astype(np.float64)}
            plus, minus = {k: v.copy() for k, v in values.items()}, {k: v.copy() for k, v in values.items()}
            plus[blob][i, j] += step
            minus[blob][i, j] -= step
            numeric = 2.0 * (_wing(plus["pred"] - plus["label"]) - _wing(minus["pred"] - minus["label"])) / (2 * step)
            assert grads[blob][i, j] == pytest.approx(numeric, rel=2e-3, abs=1e-4), (blob, i, j)
    assert np.all(grads["pred"][0, :3] == 0)  # zero difference: zero gradient
    np.testing.assert_allclose(grads["label"], -grads["pred"], rtol=1e-6)


def test_generated_train_net_uses_it(tmp_path):
    cfg = nets.NetConfig(loss="wing")
    net = nets.train_test_net(cfg, "hdf5", ["train.txt"], ["test.txt"], 8, 8, "level1")
    loss = [layer for layer in net.layer if layer.name == "loss"][0]
    assert loss.type == "WingLoss"
    assert loss.wing_loss_param.w == pytest.approx(cfg.wing_w)
    assert loss.loss_weight == [cfg.loss_weight]
    with pytest.raises(ValueError, match="loss must be one of"):
        nets.NetConfig(loss="l1")
