"""Model files are checked in Python before pycaffe sees them (issue 11): a truncated or
random caffemodel, a prototxt with a syntax error and the weights of another net each end in
one line naming the file (and the layer), never in pycaffe's abort."""
import os
import subprocess
import sys

import pytest

from landmarks.common.caffe_runtime import ROOT
from landmarks.common.protoio import write_prototxt
from landmarks.nets import mobilenet as nets
from landmarks.runtime import model_check


def _model(folder, input_size=48):
    import caffe

    folder.mkdir(parents=True, exist_ok=True)
    deploy = folder / "deploy.prototxt"
    write_prototxt(nets.deploy_net(nets.NetConfig(input_size=input_size, depthwise="group"), "level1"), deploy)
    weights = folder / "weights.caffemodel"
    caffe.Net(str(deploy), caffe.TEST).save(str(weights))
    return deploy, weights


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return _model(tmp_path_factory.mktemp("model"))


def test_a_whole_model_passes(model):
    model_check.check_model(*model)


def test_truncated_and_random_weights_are_refused(model, tmp_path):
    deploy, weights = model
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    with pytest.raises(model_check.ModelFileError, match="cut.caffemodel: not a whole Caffe weights file"):
        model_check.check_model(deploy, cut)
    noise = tmp_path / "noise.caffemodel"
    noise.write_bytes(os.urandom(50000))
    with pytest.raises(model_check.ModelFileError, match="noise.caffemodel"):
        model_check.check_model(deploy, noise)


def test_a_prototxt_syntax_error_names_the_line(model, tmp_path):
    deploy, weights = model
    broken = tmp_path / "broken.prototxt"
    lines = deploy.read_text().splitlines()
    lines[5] = lines[5] + " {{"
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(model_check.ModelFileError, match=r"broken.prototxt:6:.*syntax error"):
        model_check.check_model(broken, weights)


def test_weights_of_another_net_name_the_layer(model, tmp_path):
    deploy, _ = model
    _, other = _model(tmp_path / "other", input_size=64)
    with pytest.raises(model_check.ModelFileError, match=r"layer fc1 holds blobs"):
        model_check.check_model(deploy, other)


def test_cascade_eval_on_a_truncated_model_says_one_line(model, tmp_path):
    deploy, weights = model
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(weights.read_bytes()[:1000])
    (tmp_path / "images").mkdir()
    (tmp_path / "landmarks.txt").write_text("a.jpg " + " ".join(["10"] * 10) + "\n")
    proc = subprocess.run([sys.executable, "tools/cascade_eval.py", "--l1", str(deploy), str(cut),
                           "--landmarks", str(tmp_path / "landmarks.txt"), "--images", str(tmp_path / "images")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "cut.caffemodel: not a whole Caffe weights file" in proc.stderr
    assert "Traceback" not in proc.stderr and "Check failure" not in proc.stderr


@pytest.mark.parametrize("tool", ["forward_timing.py", "predict.py", "demo.py"])
def test_every_tool_that_loads_nets_says_one_line(model, tmp_path, tool):
    deploy, weights = model
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(weights.read_bytes()[:1000])
    image = tmp_path / "face.jpg"
    image.write_bytes(b"")  # never read: the model files are checked first
    args = {"forward_timing.py": ["--repeats", "1"], "predict.py": [str(tmp_path)], "demo.py": [str(image)]}[tool]
    proc = subprocess.run([sys.executable, f"tools/{tool}", "--l1", str(deploy), str(cut), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr  # one line
    assert "cut.caffemodel: not a whole Caffe weights file" in proc.stderr
