"""The generated MobileNet-V2: counts, layer-by-layer shapes, options, and both phases load."""
import caffe
import h5py
import lmdb
import numpy as np
import pytest
from caffe.proto import caffe_pb2

from landmarks.common.protoio import write_prototxt
from landmarks.nets import mobilenet as nets
from landmarks.nets.generate import level_nets
from landmarks.nets.solvers import get_schedule

caffe.set_mode_cpu()

RELEASED_VALUES = 242189  # the released level-1 caffemodel's stored values


def load(tmp_path, proto, phase=caffe.TEST, name="net"):
    path = tmp_path / f"{name}.prototxt"
    write_prototxt(proto, path)
    return caffe.Net(str(path), phase)


def stored_values(net):
    return sum(blob.data.size for blobs in net.params.values() for blob in blobs)


def expected_shapes(size, points=5):
    def down(side):  # a 3x3, pad 1, stride 2 convolution
        return (side - 1) // 2 + 1

    s = down(size)
    shapes = {"data": (1, 3, size, size), "conv1": (1, 16, s, s)}
    c_in = 16
    for stage, (c_out, widths) in enumerate(((24, (6, 6)), (32, (6, 6)), (64, (6, 3))), start=2):
        for repeat, t in enumerate(widths, start=1):
            name = f"block{stage}_{repeat}"
            shapes[f"{name}/expand"] = (1, t * c_in, s, s)
            if repeat == 1:
                s = down(s)
            shapes[f"{name}/dwise"] = (1, t * c_in, s, s)
            shapes[f"{name}/project"] = (1, c_out, s, s)
            if repeat == 2:
                shapes[f"{name}/add"] = (1, c_out, s, s)
            c_in = c_out
    shapes["fc1"] = (1, 256)
    shapes["fc2"] = (1, 2 * points)
    return shapes


@pytest.mark.parametrize("depthwise", nets.DEPTHWISE_CHOICES)
def test_deploy_matches_released_model(tmp_path, depthwise):
    net = load(tmp_path, nets.deploy_net(nets.NetConfig(depthwise=depthwise), "level1"))
    assert stored_values(net) == RELEASED_VALUES
    types = [layer.type for layer in net.layers]
    dw_type = "ConvolutionDepthwise" if depthwise == "layer" else "Convolution"
    depthwise_layers = [name for name in net._layer_names if name.endswith("/dwise")]
    assert len(depthwise_layers) == 6
    assert all(types[list(net._layer_names).index(name)] == dw_type for name in depthwise_layers)
    assert types.count("Eltwise") == 3
    assert "EuclideanLoss" not in types and "HDF5Data" not in types
    assert net.outputs == ["fc2"] and net.blobs["fc2"].data.shape == (1, 10)
    for name, shape in expected_shapes(48).items():
        assert net.blobs[name].data.shape == shape, name


def test_every_convolution_is_bias_free_and_followed_by_bn_scale(tmp_path):
    proto = nets.deploy_net(nets.NetConfig(), "level1")
    layers = list(proto.layer)
    for i, layer in enumerate(layers):
        if layer.type in ("Convolution", "ConvolutionDepthwise"):
            assert layer.convolution_param.bias_term is False, layer.name
            assert layers[i + 1].type == "BatchNorm" and layers[i + 2].type == "Scale", layer.name
            assert all(p.lr_mult == 0 for p in layers[i + 1].param) and len(layers[i + 1].param) == 3
            relu = i + 3 < len(layers) and layers[i + 3].type == "ReLU"
            assert relu == (not layer.name.endswith("/project")), layer.name


@pytest.mark.parametrize("size,points", [(24, 5), (48, 7), (40, 5)])
def test_input_size_and_points_options(tmp_path, size, points):
    net = load(tmp_path, nets.deploy_net(nets.NetConfig(input_size=size, points=points), "lite"))
    for name, shape in expected_shapes(size, points).items():
        assert net.blobs[name].data.shape == shape, name


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="at least 16"):
        nets.NetConfig(input_size=12)
    with pytest.raises(ValueError, match="depthwise"):
        nets.NetConfig(depthwise="fast")


def test_both_depthwise_variants_compute_the_same_function(tmp_path, rng):
    ours = load(tmp_path, nets.deploy_net(nets.NetConfig(depthwise="layer"), "a"), name="a")
    stock = load(tmp_path, nets.deploy_net(nets.NetConfig(depthwise="group"), "b"), name="b")
    for name, blobs in ours.params.items():
        for mine, theirs in zip(blobs, stock.params[name]):
            mine.data[...] = rng.standard_normal(mine.data.shape) * 0.3
            theirs.data[...] = mine.data
    for name in ours.params:  # BatchNorm: positive variance, scale factor 1
        if name.endswith("/bn"):
            for net in (ours, stock):
                net.params[name][1].data[...] = np.abs(net.params[name][1].data) + 1
                net.params[name][2].data[...] = 1
    x = rng.standard_normal((1, 3, 48, 48)).astype(np.float32) * 50
    outs = []
    for net in (ours, stock):
        net.blobs["data"].data[...] = x
        outs.append(net.forward()["fc2"].copy())
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-5)


def _write_hdf5(folder, split, count, size=48):
    rng = np.random.default_rng(0)
    (folder / "hdf5").mkdir(parents=True, exist_ok=True)
    shard = folder / "hdf5" / f"{split}.h5"
    with h5py.File(shard, "w") as f:
        f["data"] = rng.uniform(-127.5, 127.5, (count, 3, size, size)).astype(np.float32)
        f["label"] = rng.uniform(-1, 1, (count, 10)).astype(np.float32)
    (folder / "hdf5" / f"{split}.txt").write_text(f"{shard}\n")


def _write_lmdb(folder, split, count, size=48):
    rng = np.random.default_rng(0)
    (folder / "lmdb").mkdir(parents=True, exist_ok=True)
    for kind in ("images", "labels"):
        with lmdb.open(str(folder / "lmdb" / f"{split}_{kind}"), map_size=1 << 26) as env:
            with env.begin(write=True) as txn:
                for i in range(count):
                    datum = caffe_pb2.Datum()
                    if kind == "images":
                        datum.channels, datum.height, datum.width = 3, size, size
                        datum.data = rng.integers(0, 256, (3, size, size), dtype=np.uint8).tobytes()
                    else:
                        datum.channels, datum.height, datum.width = 10, 1, 1
                        datum.float_data.extend(rng.uniform(-1, 1, 10).tolist())
                    txn.put(f"{i:08d}".encode(), datum.SerializeToString())


@pytest.mark.parametrize("source", nets.SOURCE_CHOICES)
def test_train_test_net_loads_in_both_phases(tmp_path, source):
    write = _write_hdf5 if source == "hdf5" else _write_lmdb
    for split in ("train", "test"):
        write(tmp_path / "data", split, 6)
    schedule = get_schedule("smoke")
    train_test, _ = level_nets(1, nets.NetConfig(), source, str(tmp_path / "data"), schedule)
    types = [layer.type for layer in train_test.layer]
    assert types[-1] == "EuclideanLoss" and train_test.layer[-1].loss_weight == [100.0]
    for phase in (caffe.TRAIN, caffe.TEST):
        net = load(tmp_path, train_test, phase, name=f"tt{phase}")
        assert net.blobs["data"].data.shape == (schedule.batch_train if phase == caffe.TRAIN
                                                else schedule.batch_test, 3, 48, 48)
        assert net.blobs["label"].data.reshape(net.blobs["label"].data.shape[0], -1).shape[1] == 10
        out = net.forward()
        if phase == caffe.TRAIN:  # an untrained net's TEST phase uses empty BN statistics
            assert np.isfinite(out["loss"]) and out["loss"] > 0
        if source == "lmdb":  # the mean is subtracted by the transform
            assert net.blobs["data"].data.min() < 0 < net.blobs["data"].data.max()
