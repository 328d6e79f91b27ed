"""A real 20-iteration `caffe train` of the generated level-1 net, with each depthwise variant."""
import os
import re
import subprocess

import h5py
import numpy as np
import pytest
from caffe.proto import caffe_pb2

from landmarks.common import caffe_runtime
from landmarks.nets import mobilenet as nets
from landmarks.nets.generate import write_level_files
from landmarks.nets.solvers import get_schedule


@pytest.fixture(scope="module")
def random_hdf5(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(3)
    (root / "hdf5").mkdir()
    for split, count in (("train", 40), ("test", 16)):
        shard = root / "hdf5" / f"{split}.h5"
        with h5py.File(shard, "w") as f:
            f["data"] = rng.uniform(-127.5, 127.5, (count, 3, 48, 48)).astype(np.float32)
            f["label"] = rng.uniform(-0.5, 0.5, (count, 10)).astype(np.float32)
        (root / "hdf5" / f"{split}.txt").write_text(f"{shard}\n")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("depthwise", nets.DEPTHWISE_CHOICES)
def test_caffe_train_runs(tmp_path, random_hdf5, depthwise):
    paths = write_level_files(tmp_path, 1, nets.NetConfig(depthwise=depthwise), "hdf5", random_hdf5,
                              get_schedule("smoke"), mode="CPU")
    result = subprocess.run([caffe_runtime.caffe_binary(), "train", f"--solver={paths['solver']}"],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "GLOG_minloglevel": "0"})
    log = result.stderr
    assert result.returncode == 0, log[-3000:]
    # the trained model holds the depthwise weights under the chosen layer type
    model = caffe_pb2.NetParameter()
    model.ParseFromString((tmp_path / "snapshots" / "level1_iter_20.caffemodel").read_bytes())
    dwise = {layer.name: layer for layer in model.layer if layer.name.endswith("/dwise")}
    assert len(dwise) == 6
    expected = "ConvolutionDepthwise" if depthwise == "layer" else "Convolution"
    assert {layer.type for layer in dwise.values()} == {expected}
    assert list(dwise["block2_1/dwise"].blobs[0].shape.dim) == [96, 1, 3, 3]
    losses = [float(v) for v in re.findall(r"Iteration \d+.*?, loss = ([-\w.+]+)", log)]
    assert len(losses) >= 20 and all(np.isfinite(losses))
    assert "Optimization Done" in log
