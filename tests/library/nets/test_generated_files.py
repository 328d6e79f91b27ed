"""The committed prototxt/ and solvers/ files are exactly what the generator writes."""
from pathlib import Path

import pytest
from caffe.proto import caffe_pb2

from landmarks.common.protoio import read_prototxt
from landmarks.nets.generate import canonical_files
from support import ROOT


def test_committed_files_match_generator():
    expected = canonical_files(ROOT)
    assert len(expected) == 10
    stale = [path for path, text in expected.items() if not Path(path).exists() or Path(path).read_text() != text]
    assert not stale, f"regenerate with `make prototxt`: {stale}"
    generated = {Path(p).name for p in expected}
    on_disk = {p.name for d in ("prototxt", "solvers") for p in (ROOT / d).glob("*.prototxt")}
    assert on_disk == generated, f"files the generator does not write: {on_disk - generated}"


def test_canonical_solver_is_the_articles():
    s = read_prototxt(ROOT / "solvers/level1_solver.prototxt", caffe_pb2.SolverParameter())
    assert (s.type, s.lr_policy) == ("Adam", "multistep")
    assert (s.base_lr, s.momentum, s.weight_decay, s.gamma) == pytest.approx((0.001, 0.9, 0.0004, 0.1))
    assert list(s.stepvalue) == [80000, 100000] and s.max_iter == 200000
    assert (s.test_interval, list(s.test_iter), s.display, s.snapshot) == (1250, [160], 1000, 50000)
    assert s.solver_mode == caffe_pb2.SolverParameter.GPU
    assert s.snapshot_prefix.startswith("runs/")
    s2 = read_prototxt(ROOT / "solvers/level2_solver.prototxt", caffe_pb2.SolverParameter())
    assert s2.max_iter == 120000
    net = read_prototxt(ROOT / s.net, caffe_pb2.NetParameter())
    assert [l.hdf5_data_param.batch_size for l in net.layer[:2]] == [128, 128]
