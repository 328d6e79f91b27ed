"""Solver building: schedules, overrides, machine-following mode, no snapshots in the source tree."""
import pytest
from caffe.proto import caffe_pb2

from landmarks.common import caffe_runtime
from landmarks.nets import solvers


def test_short_schedules_are_short_and_seeded():
    demo, smoke = solvers.get_schedule("demo"), solvers.get_schedule("smoke")
    assert smoke.max_iter[1] <= 50 and demo.max_iter[1] <= 5000
    assert smoke.random_seed >= 0 and demo.random_seed >= 0
    for schedule in (demo, smoke):
        assert all(step < schedule.max_iter[1] for step in schedule.stepvalue)


def test_solver_follows_the_machine(tmp_path, monkeypatch):
    monkeypatch.setattr(solvers, "default_mode", lambda: "CPU")
    s = solvers.solver(solvers.get_schedule("smoke"), 2, tmp_path / "net.prototxt", tmp_path / "snap/level2")
    assert s.solver_mode == caffe_pb2.SolverParameter.CPU
    assert s.snapshot_prefix == str(tmp_path / "snap/level2")
    forced = solvers.solver(solvers.get_schedule("smoke"), 2, "n", "p", mode="gpu", test_iter=3, max_iter=7)
    assert forced.solver_mode == caffe_pb2.SolverParameter.GPU
    assert list(forced.test_iter) == [3] and forced.max_iter == 7


def test_this_machine_mode_matches_the_build():
    info = caffe_runtime.build_info()
    expected = "GPU" if info["mode"] == "GPU" and caffe_runtime.gpu_count() > 0 else "CPU"
    assert caffe_runtime.default_mode() == expected


def test_unknown_schedule_and_level_are_refused():
    with pytest.raises(ValueError, match="unknown schedule"):
        solvers.get_schedule("fast")
    with pytest.raises(ValueError, match="level"):
        solvers.solver(solvers.get_schedule("article"), 3, "n", "p", mode="CPU")
