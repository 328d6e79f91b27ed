"""A short real `caffe train` reads what data_prep writes: both levels, HDF5 and LMDB, through
the generated nets (landmarks.nets.generate / landmarks.nets.mobilenet)."""
import os
import re
import subprocess

import numpy as np
import pytest

from data_prep import celeba, level1, level2, synthetic
from data_prep.predictions import write_predictions
from landmarks.common import caffe_runtime
from landmarks.nets import mobilenet as nets
from landmarks.nets.generate import write_level_files
from landmarks.nets.solvers import get_schedule

ITERATIONS = 10


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("caffe_data")
    root = base / "celeba"
    synthetic.generate(root, 24, seed=11, workers=1, progress=False)
    common = ["--dataset", str(root), "--format", "both", "--quiet", "--workers", "1"]
    assert level1.main(common + ["--out", str(base / "level1")]) == 0
    ds = celeba.load(root)
    rng = np.random.default_rng(1)
    points = np.stack([e.points for e in ds.entries]) + rng.normal(0, 2, (len(ds.entries), 5, 2))
    write_predictions(base / "pred.txt", [e.name for e in ds.entries], points)
    assert level2.main(common + ["--out", str(base / "level2"), "--predictions", str(base / "pred.txt"),
                                 "--thresh", "inf"]) == 0
    return {1: base / "level1", 2: base / "level2"}


@pytest.mark.slow
@pytest.mark.parametrize("source", nets.SOURCE_CHOICES)
@pytest.mark.parametrize("level", [1, 2])
def test_caffe_trains_on_our_data(tmp_path, data_dirs, level, source):
    paths = write_level_files(tmp_path, level, nets.NetConfig(depthwise="group"), source, data_dirs[level],
                              get_schedule("smoke"), mode="CPU", max_iter=ITERATIONS)
    result = subprocess.run([caffe_runtime.caffe_binary(), "train", f"--solver={paths['solver']}"],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "GLOG_minloglevel": "0"})
    log = result.stderr
    assert result.returncode == 0, log[-3000:]
    train = [float(v) for v in re.findall(r"Iteration \d+.*?, loss = ([-\w.+]+)", log)]
    test = {int(i): float(v) for i, v in re.findall(
        r"Iteration (\d+), Testing net.*?Test net output #\d+: loss = ([-\w.+]+)", log, flags=re.S)}
    assert len(train) >= ITERATIONS and all(np.isfinite(train)), log[-2000:]
    # Iteration 0 is left out: untrained BatchNorm has no global statistics yet (Caffe
    # divides by their zero count), so that test loss is NaN whatever the data.
    assert test.keys() >= {ITERATIONS} and np.isfinite(test[ITERATIONS]), test
    assert "Optimization Done" in log


@pytest.mark.parametrize("source", nets.SOURCE_CHOICES)
def test_caffe_data_layers_see_exactly_our_samples(tmp_path, data_dirs, source):
    import caffe
    import h5py

    paths = write_level_files(tmp_path, 1, nets.NetConfig(depthwise="group"), source, data_dirs[1],
                              get_schedule("smoke"), mode="CPU")
    caffe.set_mode_cpu()
    net = caffe.Net(str(paths["train_test"]), caffe.TEST)
    net.forward()
    shard = (data_dirs[1] / "hdf5" / "test.txt").read_text().split()[0]
    with h5py.File(shard, "r") as f:
        data, label = f["data"][...], f["label"][...]
    n = len(data)  # 3 test samples; the batch of 8 wraps around
    got_data = net.blobs["data"].data
    got_label = net.blobs["label"].data.reshape(len(got_data), -1)
    assert got_data.shape[1:] == (3, 48, 48) and got_label.shape[1] == 10
    np.testing.assert_array_equal(got_data[:n], data)
    np.testing.assert_array_equal(got_label[:n], label)
