"""landmarks.evaluate.timing and tools/forward_timing.py: OpenCV's reading of depthwise nets against
pycaffe, model sizes, and the timing JSON and table of a real (tiny) run in several backends."""
import json
import subprocess
import sys
from pathlib import Path

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2

from data_prep import synthetic
from landmarks.common.protoio import DEPTHWISE_TYPE
from landmarks.evaluate import timing
from landmarks.runtime import backends
from landmarks.runtime.backends import CaffeNet
from support import ROOT, finished_run_folder
from workflow import runs

TOOL = ROOT / "tools" / "forward_timing.py"
LEVEL1 = ROOT / "prototxt" / "level1_deploy.prototxt"  # ConvolutionDepthwise layers
LEVEL2 = ROOT / "prototxt" / "level2_deploy.prototxt"
DEPTHWISE_LAYERS = 6


def _usable_weights(deploy, path, seed):
    """Random weights, BatchNorm as identity (mean 0, variance 1, factor 1): an untrained net
    would output NaN from its all-zero statistics."""
    rng = np.random.default_rng(seed)
    net = caffe.Net(str(deploy), caffe.TEST)
    for name, blobs in net.params.items():
        if net.layers[list(net._layer_names).index(name)].type == "BatchNorm":
            blobs[0].data[...], blobs[1].data[...], blobs[2].data[...] = 0, 1, 1
        else:
            for blob in blobs:
                blob.data[...] = rng.normal(0, 0.1, blob.data.shape)
    net.save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return _usable_weights(LEVEL1, folder / "level1.caffemodel", 1), _usable_weights(LEVEL2, folder / "level2.caffemodel", 2)


def test_opencv_backend_reads_the_depthwise_net_as_caffe_runs_it(weights):
    stored = caffe_pb2.NetParameter()
    stored.ParseFromString(Path(weights[0]).read_bytes())
    # the caffemodel itself records the depthwise type: OpenCV must not need it rewritten
    assert sum(layer.type == DEPTHWISE_TYPE for layer in stored.layer) == DEPTHWISE_LAYERS
    batch = np.random.default_rng(0).uniform(-127.5, 127.5, (3, 3, 48, 48)).astype(np.float32)
    original = CaffeNet(LEVEL1, weights[0]).forward(batch)
    assert np.all(np.isfinite(original)) and np.ptp(original) > 1e-3
    dnn = backends.OpenCVNet(LEVEL1, weights[0])  # rewrites ConvolutionDepthwise on the way in
    assert dnn.rewritten == DEPTHWISE_LAYERS and dnn.size == 48
    scale = np.abs(original).max()
    np.testing.assert_allclose(dnn.forward(batch), original, rtol=1e-4, atol=1e-4 * scale)


def test_model_size_counts_every_stored_value(weights):
    size = timing.model_size(weights[0])
    net = caffe.Net(str(LEVEL1), caffe.TEST, weights=weights[0])
    assert size["values"] == sum(b.data.size for blobs in net.params.values() for b in blobs) == 242189
    assert size["bytes"] == Path(weights[0]).stat().st_size


def _timing_tool(*args):
    result = subprocess.run([sys.executable, str(TOOL), "--repeats", "3", "--warmup", "1", "--large-batch", "4", *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_timing_json_of_both_levels_and_the_cascade(weights, tmp_path):
    out = tmp_path / "timing.json"
    chosen = ["caffe", "caffe-folded", "opencv"] + (["onnxruntime"] if not backends.unavailable("onnxruntime") else [])
    stdout = _timing_tool("--l1", str(LEVEL1), weights[0], "--l2", str(LEVEL2), weights[1], "--json", str(out),
                          "--backends", *chosen)
    result = json.loads(out.read_text())
    rows = {(r["what"], r["backend"], r["batch"]): r for r in result["rows"]}
    assert set(rows) == {(what, backend, batch) for what in ("level1", "level2", "cascade")
                         for backend in chosen for batch in (1, 4)}
    for row in rows.values():
        assert 0 < row["median_ms"] <= row["p90_ms"] < 60_000
        assert row["repeats"] == 3
    for backend in chosen:
        # the whole chain does strictly more than one of its forwards
        assert rows[("cascade", backend, 4)]["min_ms"] > rows[("level1", backend, 4)]["min_ms"]
    assert result["model_sizes"]["level1"] == {**timing.model_size(weights[0]), "deploy": str(LEVEL1)}
    assert result["model_sizes"]["level2"]["values"] == 242189
    # the folded files (exported on the fly) are smaller than the original ones
    sizes = result["backend_sizes"]
    assert sizes["caffe"]["level1"] == Path(weights[0]).stat().st_size + LEVEL1.stat().st_size
    assert sizes["opencv"]["level1"] < sizes["caffe"]["level1"]
    # no --images: the tool draws its 8 synthetic faces (tools/forward_timing.py SYNTHETIC_IMAGES)
    images = result["images"]
    assert (images["source"], images["count"], images["paths"]) == ("synthetic (data_prep.synthetic)", 8, [])
    # one table: a line per backend, the columns of both levels and the cascade
    table = [line for line in stdout.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(chosen)
    # --l1 files say nothing of their schedule: the article's recipe, and the table says so
    assert result["settings"]["recipe"]["name"] == "article"
    assert "cascade JPEG->points (article recipe), batch 4 ms/image" in table[0]
    assert all(any(line.startswith(f"| {b} |") for line in table) for b in chosen)


def test_run_folder_gives_models_and_default_json(weights, tmp_path):
    finished_run_folder(tmp_path / "runs" / "x", [(LEVEL1, weights[0])])
    images = tmp_path / "images"
    synthetic.write_samples(images, count=2, seed=3)
    stdout = _timing_tool("--run", str(tmp_path / "runs" / "x"), "--images", str(images), "--backends", "opencv")
    result = json.loads((tmp_path / "runs" / "x" / "timing.json").read_text())
    # no level 2 trained yet: level 1 and a one-level cascade
    assert {(r["what"], r["batch"]) for r in result["rows"]} == {("level1", 1), ("level1", 4), ("cascade", 1), ("cascade", 4)}
    assert result["settings"]["cascade_levels"] == 1 and result["images"]["count"] == 2
    assert "level 1 alone" in stdout


def test_run_folder_without_level1_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="level1"):
        runs.run_models(tmp_path)


def test_caffe_layer_times_of_the_folded_model(weights, tmp_path):
    from landmarks.deploy.export import FOLDED, OURS
    from landmarks.deploy.fold import fold_model

    fold_model(str(LEVEL1), weights[0], tmp_path / FOLDED[0], tmp_path / FOLDED[1], ours_out=tmp_path / OURS)
    times = timing.caffe_layer_times(tmp_path / OURS, tmp_path / FOLDED[1], iterations=20)
    # the folded net: no BatchNorm or Scale left; our depthwise layer is what runs
    assert {"Convolution", "ConvolutionDepthwise", "ReLU", "InnerProduct"} <= set(times["by_type"])
    assert not {"BatchNorm", "Scale", "Dropout"} & set(times["by_type"])
    assert times["by_type"]["ConvolutionDepthwise"]["layers"] == DEPTHWISE_LAYERS
    assert sum(e["share"] for e in times["by_type"].values()) == pytest.approx(1.0)
    assert 0 < times["total_ms"] < 1000
    assert "| ReLU |" in timing.format_layer_times(times)
