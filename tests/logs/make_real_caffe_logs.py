"""Regenerates the real Caffe log fixtures in this folder; not a test, run by hand.

  .venv/bin/python tests/logs/make_real_caffe_logs.py

Trains a tiny HDF5 -> InnerProduct -> EuclideanLoss net (loss_weight 100, like our nets) with
Adam for 30 iterations on the CPU and keeps `caffe train`'s stderr:

  real_caffe_train.log    one complete run: display 1, test every 10, lr step at 15.
  real_caffe_resumed.log  the same run killed after iteration 25 (its log cut there), then
                          resumed from the iteration-20 snapshot with base_lr halved, so the
                          values of iterations 20-25 differ between the two runs.

The fixtures are committed; the tests never run Caffe to rebuild them.
"""
import os
import subprocess
import tempfile
from pathlib import Path

import caffe
import h5py
import numpy as np
from caffe import layers as L
from caffe.proto import caffe_pb2

from landmarks.common import caffe_runtime
from landmarks.common.protoio import write_prototxt

HERE = Path(__file__).resolve().parent
MAX_ITER = 30
KILLED_AFTER = 25  # the first run's log is cut after this iteration's lines
RESUME_FROM = 20   # ... and training resumes from this snapshot


def write_data(root):
    rng = np.random.default_rng(7)
    weights = rng.normal(size=(8, 4)).astype(np.float32)
    for split, count in (("train", 64), ("test", 16)):
        x = rng.normal(size=(count, 8)).astype(np.float32)
        shard = root / f"{split}.h5"
        with h5py.File(shard, "w") as f:
            f["data"] = x
            f["label"] = x @ weights + 0.05 * rng.normal(size=(count, 4)).astype(np.float32)
        (root / f"{split}.txt").write_text(f"{shard}\n")


def write_net(root):
    n = caffe.NetSpec()
    n.data, n.label = L.HDF5Data(source=str(root / "train.txt"), batch_size=8, ntop=2,
                                 include=dict(phase=caffe.TRAIN))
    train = n.to_proto()
    n = caffe.NetSpec()
    n.data, n.label = L.HDF5Data(source=str(root / "test.txt"), batch_size=8, ntop=2,
                                 include=dict(phase=caffe.TEST))
    n.fc = L.InnerProduct(n.data, num_output=4, weight_filler=dict(type="xavier"))
    n.loss = L.EuclideanLoss(n.fc, n.label, loss_weight=100)
    net = n.to_proto()
    net.layer.insert(0, train.layer[0])
    net.name = "tiny_regression"
    return write_prototxt(net, str(root / "train_test.prototxt"))


def write_solver(root, net_path, base_lr):
    s = caffe_pb2.SolverParameter()
    s.net = net_path
    s.type = "Adam"
    s.base_lr = base_lr
    s.momentum, s.momentum2 = 0.9, 0.999
    s.lr_policy = "multistep"
    s.gamma = 0.1
    s.stepvalue.append(15)
    s.max_iter = MAX_ITER
    s.test_iter.append(2)
    s.test_interval = 10
    s.display = 1
    s.snapshot = 10
    s.snapshot_prefix = str(root / "tiny")
    s.solver_mode = caffe_pb2.SolverParameter.CPU
    s.random_seed = 1
    return write_prototxt(s, str(root / f"solver_lr{base_lr:g}.prototxt"))


def caffe_train(solver, *extra):
    env = {**os.environ, "GLOG_logtostderr": "1", "GLOG_minloglevel": "0"}
    result = subprocess.run([caffe_runtime.caffe_binary(), "train", f"--solver={solver}", *extra],
                            capture_output=True, text=True, env=env, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return result.stderr


def cut_after_iteration(log, iteration):
    """The log up to (not including) the first line that mentions `iteration + 1`."""
    marker = f"] Iteration {iteration + 1},"
    return log[:log.rindex("\n", 0, log.index(marker)) + 1]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_data(root)
        net = write_net(root)
        full = caffe_train(write_solver(root, net, 0.1))
        (HERE / "real_caffe_train.log").write_text(full)
        resumed = caffe_train(write_solver(root, net, 0.05),
                              f"--snapshot={root}/tiny_iter_{RESUME_FROM}.solverstate")
        (HERE / "real_caffe_resumed.log").write_text(cut_after_iteration(full, KILLED_AFTER) + resumed)
    for name in ("real_caffe_train.log", "real_caffe_resumed.log"):
        print(HERE / name)


if __name__ == "__main__":
    main()
