"""The `caffe train` driver: a non-finite loss stops the run naming the iteration; RESUME
continues from the newest .solverstate; Ctrl-C stops Caffe with a snapshot."""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import h5py
import numpy as np
import pytest

from landmarks import nets, train
from landmarks.generate import write_level_files
from landmarks.solvers import get_schedule


def _data(root, nan_labels=False):
    rng = np.random.default_rng(7)
    (root / "hdf5").mkdir(parents=True)
    for split in ("train", "test"):
        shard = root / "hdf5" / f"{split}.h5"
        labels = rng.uniform(-0.5, 0.5, (16, 10)).astype(np.float32)
        if nan_labels and split == "train":
            labels[:, 3] = np.nan
        with h5py.File(shard, "w") as f:
            f["data"] = rng.uniform(-100, 100, (16, 3, 48, 48)).astype(np.float32)
            f["label"] = labels
        (root / "hdf5" / f"{split}.txt").write_text(f"{shard}\n")
    return root


def _files(tmp_path, data, **schedule_changes):
    schedule = replace(get_schedule("smoke"), **schedule_changes)
    return write_level_files(tmp_path / "run", 1, nets.NetConfig(depthwise="group"), "hdf5", data, schedule,
                             mode="CPU", test_iter=1)


@pytest.mark.slow
def test_nan_loss_stops_with_the_iteration(tmp_path):
    paths = _files(tmp_path, _data(tmp_path / "data", nan_labels=True))
    with pytest.raises(train.TrainingDiverged, match=r"became nan at iteration 0"):
        train.train(paths["solver"], tmp_path / "run", echo=lambda *_: None)
    record = json.loads((tmp_path / "run" / "train.json").read_text())
    assert record["status"] == "diverged"


@pytest.mark.slow
def test_resume_continues_from_the_newest_solverstate(tmp_path):
    data = _data(tmp_path / "data")
    first = _files(tmp_path, data, max_iter={1: 10, 2: 10}, snapshot=5)
    record = train.train(first["solver"], tmp_path / "run", echo=lambda *_: None)
    assert record["final_weights"].endswith("level1_iter_10.caffemodel")
    second = _files(tmp_path, data, max_iter={1: 16, 2: 16}, snapshot=5)
    lines = []
    record = train.train(second["solver"], tmp_path / "run", resume=True, echo=lines.append)
    assert record["resumed_from"].endswith("level1_iter_10.solverstate")
    assert record["final_weights"].endswith("level1_iter_16.caffemodel") and record["last_iteration"] == 16
    log = (tmp_path / "run" / "train.log").read_text()
    assert "Iteration 0, loss" in log  # the first run's lines are kept: the log is appended
    assert "Resuming from" in log or "Restoring previous solver status" in log
    assert not any(" iter       3/" in line for line in lines)  # the second run started at 10


def test_newest_snapshot_orders_by_iteration_number(tmp_path):
    for i in (5, 40, 100, 7):
        (tmp_path / f"level1_iter_{i}.solverstate").touch()
    assert train.newest_snapshot(tmp_path / "level1").name == "level1_iter_100.solverstate"
    assert train.newest_snapshot(tmp_path / "other") is None


def test_gpu_request_without_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(train.caffe_runtime, "gpu_count", lambda: 0)
    with pytest.raises(train.TrainingError, match="no GPU"):
        train.gpu_args("0")
    with pytest.raises(train.TrainingError, match="device id"):
        train.gpu_args("first")
    assert train.gpu_args("") == [] and train.gpu_args(None) == []


@pytest.mark.slow
def test_ctrl_c_stops_with_a_snapshot(tmp_path):
    paths = _files(tmp_path, _data(tmp_path / "data"), max_iter={1: 100000, 2: 100000}, display=1,
                   snapshot=0, test_interval=100000)
    script = ("import sys; from landmarks import train\n"
              "try:\n    train.train(sys.argv[1], sys.argv[2])\n"
              "except KeyboardInterrupt as e:\n    print('STOPPED', e); sys.exit(130)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(paths["solver"]), str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 120
    for line in proc.stdout:
        if "iter       5/" in line or time.time() > deadline:
            break
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    record = json.loads((tmp_path / "run" / "train.json").read_text())
    assert record["status"] == "interrupted"
    weights = record["final_weights"]
    assert weights and os.path.exists(weights) and os.path.exists(weights.replace(".caffemodel", ".solverstate"))
    assert "STOPPED" in out and "RESUME=1" in out
