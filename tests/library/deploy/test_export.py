"""landmarks.deploy.fold, landmarks.deploy.onnx_export, landmarks.runtime.backends, landmarks.deploy.export(_run) and
tools/export.py: the folded Caffe model in our Caffe and OpenCV, ONNX in ONNX Runtime, int8,
ncnn, the whole cascade in every installed backend, against the original net in real Caffe.

The weights are random with BatchNorm statistics far from identity (running sums scaled by
a moving-average factor, and one factor of 0, which Caffe reads as "zero statistics"), so a
fold that ignored the factor, or treated 0 as 1, would miss the tolerance by far."""
import json
import subprocess
import sys
from pathlib import Path

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2

from data_prep import readers
from data_prep.synthetic import render_sample
from landmarks.common.protoio import read_prototxt
from landmarks.conventions.images import read_level1
from landmarks.deploy import export, fold, onnx_export
from landmarks.runtime import backends
from landmarks.runtime.inference import Cascade
from support import ROOT, finished_run_folder

TOOL = ROOT / "tools" / "export.py"
LEVEL1 = ROOT / "prototxt" / "level1_deploy.prototxt"  # ConvolutionDepthwise layers, Dropout
LEVEL2 = ROOT / "prototxt" / "level2_deploy.prototxt"
IMAGES = 24
TOLERANCE = 1e-4


def _weights(deploy, path, seed):
    """Random weights; BatchNorm sums m, v stored with a factor f in [0.5, 4]; the first
    BatchNorm has f = 0 (Caffe then uses zero mean and variance: x / sqrt(eps))."""
    rng = np.random.default_rng(seed)
    net = caffe.Net(str(deploy), caffe.TEST)
    first = True
    for name, blobs in net.params.items():
        kind = net.layers[list(net._layer_names).index(name)].type
        if kind == "BatchNorm":
            f = 0.0 if first else rng.uniform(0.5, 4.0)
            first = False
            c = blobs[0].data.shape
            blobs[0].data[...] = rng.normal(0, 0.5, c) * (f or 1)
            blobs[1].data[...] = rng.uniform(0.5, 2.0, c) * (f or 1)
            blobs[2].data[...] = f
        elif kind == "Scale":
            blobs[0].data[...] = rng.uniform(0.5, 1.5, blobs[0].data.shape)
            blobs[1].data[...] = rng.normal(0, 0.1, blobs[1].data.shape)
        else:
            for blob in blobs:
                blob.data[...] = rng.normal(0, 0.1, blob.data.shape)
    # the first conv's output (input minus 127.5 through random 3x3 weights) is large: scale it
    net.params["conv1"][0].data[...] *= 0.01
    net.save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def mtfl(tmp_path_factory):
    """An MTFL-format folder (training.txt + JPEGs) of synthetic faces, with their true points."""
    folder = tmp_path_factory.mktemp("mtfl")
    (folder / "faces").mkdir()
    lines = []
    for index in range(IMAGES):
        sample = render_sample(5, index)
        (folder / "faces" / sample.name).write_bytes(sample.jpeg())
        xs, ys = sample.label[:, 0], sample.label[:, 1]
        lines.append(f"faces\\{sample.name} " + " ".join(f"{v:g}" for v in list(xs) + list(ys)))  # MTFL's backslashes
    (folder / "training.txt").write_text("\n".join(" " + line for line in lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return ((str(LEVEL1), _weights(LEVEL1, folder / "level1.caffemodel", 1)),
            (str(LEVEL2), _weights(LEVEL2, folder / "level2.caffemodel", 2)))


@pytest.fixture(scope="module")
def inputs(mtfl):
    return np.stack([read_level1(str(p))[0] for p in sorted((mtfl / "faces").glob("*.jpg"))])


@pytest.fixture(scope="module")
def exported(models, inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "level1"
    return export.export_net(*models[0], out, inputs, inputs, echo=lambda *a: None)


def test_fold_removes_batchnorm_scale_dropout_and_depthwise(exported, models):
    net = read_prototxt(exported["files"]["caffe"][0], caffe_pb2.NetParameter())
    types = [layer.type for layer in net.layer]
    for gone in ("BatchNorm", "Scale", "Dropout", "ConvolutionDepthwise"):
        assert gone not in types
    original = read_prototxt(models[0][0], caffe_pb2.NetParameter())
    assert exported["fold"]["folded_batchnorm"] == sum(l.type == "BatchNorm" for l in original.layer) == 19
    assert exported["fold"]["depthwise_to_group"] == 6
    groups = [l.convolution_param.group for l in net.layer if l.type == "Convolution"]
    assert sorted(g for g in groups if g > 1) == sorted([96, 144, 144, 192, 192, 192])
    assert exported["sizes"]["caffe"] < Path(models[0][1]).stat().st_size + Path(models[0][0]).stat().st_size
    assert Path(exported["files"]["caffe"][1]).stat().st_size < Path(models[0][1]).stat().st_size


def test_every_float_format_agrees_with_the_original_net(exported, models, inputs):
    reference = backends.load("caffe", models[0]).forward(inputs)
    assert np.ptp(reference) > 0.1  # a live net, not a constant
    formats = {"caffe": ("caffe", "caffe"), "caffe-depthwise": ("caffe", "caffe-depthwise"),
               "opencv": ("opencv", "caffe"), "onnxruntime": ("onnxruntime", "onnxruntime"), "ncnn": ("ncnn", "ncnn")}
    checked = []
    for name, (runtime, key) in formats.items():
        if backends.unavailable(runtime) or key not in exported["files"]:
            continue
        net = backends.load(runtime, exported["files"][key], size=48)
        for batch in (inputs[:1], inputs):  # the batch size is free in every format
            np.testing.assert_allclose(net.forward(batch), reference[:len(batch)], atol=TOLERANCE, rtol=0)
        assert exported["agreement"][name] <= TOLERANCE
        checked.append(name)
    assert {"caffe", "caffe-depthwise", "opencv"} <= set(checked)
    assert exported["agrees"]


def test_a_factor_of_zero_is_read_as_caffe_reads_it(models, tmp_path):
    """Treating the first BatchNorm's factor 0 as 1 would change the output far beyond 1e-4."""
    net, params = fold.read_net(models[0][0]), fold.read_weights(models[0][1])
    first_bn = next(l.name for l in net.layer if l.type == "BatchNorm")
    assert params[first_bn][2].item() == 0 and np.abs(params[first_bn][0]).max() > 0.1
    wrong = dict(params)
    wrong[first_bn] = [params[first_bn][0], params[first_bn][1], np.ones(1)]
    folded, folded_params, _ = fold.fold(net, wrong)
    fold.write_model(folded, folded_params, tmp_path / "d.prototxt", tmp_path / "w.caffemodel")
    batch = np.random.default_rng(0).uniform(-127.5, 127.5, (2, 3, 48, 48)).astype(np.float32)
    reference = backends.load("caffe", models[0]).forward(batch)
    assert np.abs(backends.load("caffe", (tmp_path / "d.prototxt", tmp_path / "w.caffemodel")).forward(batch)
                  - reference).max() > 100 * TOLERANCE


@pytest.mark.skipif(backends.unavailable("onnxruntime") is not None, reason="onnxruntime is not installed")
def test_onnx_of_the_unfolded_depthwise_net_agrees_too(models, inputs, tmp_path):
    """The exporter also reads the original net: BatchNorm, Scale, ConvolutionDepthwise, Dropout."""
    path = onnx_export.export_onnx(*models[1], tmp_path / "level2.onnx")
    reference = backends.load("caffe", models[1]).forward(inputs)
    np.testing.assert_allclose(backends.load("onnxruntime", [path]).forward(inputs), reference, atol=TOLERANCE, rtol=0)


@pytest.mark.skipif(backends.unavailable("onnxruntime") is not None, reason="onnxruntime is not installed")
def test_int8_is_smaller_and_close(exported, models, inputs):
    int8 = exported["files"]["onnxruntime-int8"][0]
    assert Path(int8).stat().st_size < 0.4 * Path(exported["files"]["onnxruntime"][0]).stat().st_size
    reference = backends.load("caffe", models[0]).forward(inputs)
    quantised = backends.load("onnxruntime", [int8]).forward(inputs)
    difference = np.abs(quantised - reference)
    assert difference.max() == pytest.approx(exported["agreement"]["onnxruntime-int8"], rel=1e-5)
    # int8 moves the output, but stays far closer than the output's own spread
    assert 0 < difference.mean() < 0.1 * reference.std()


def test_ncnn_is_written_or_its_absence_explained(exported):
    if export.pnnx_binary() is None:
        assert "pnnx is not installed" in exported["skipped"]["ncnn"]
    else:
        assert [Path(p).name for p in exported["files"]["ncnn"]] == list(export.NCNN)


def _tool(*args):
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=600)


def test_export_tool_writes_one_net(models, mtfl, tmp_path):
    out = tmp_path / "one"
    result = _tool(*models[0], "--out", str(out), "--images", str(mtfl), "--calibration", "8")
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((out / "export.json").read_text())
    assert record["check_images"] == len(readers.load(str(mtfl), seed=1).split("val"))  # the validation split
    assert {"deploy.prototxt", "weights.caffemodel", "model.onnx"} <= {p.name for p in out.iterdir()}
    assert "opencv" in result.stdout and "1 Dropout dropped" in result.stdout


def test_export_tool_refuses_bad_input_in_one_line(models, mtfl, tmp_path):
    not_a_net = tmp_path / "bad.prototxt"
    not_a_net.write_text("layer { this is not a net")
    stored = caffe_pb2.NetParameter()
    stored.ParseFromString(Path(models[0][1]).read_bytes())
    stored.layer[1].name = "renamed"  # conv1's weights under another name: Caffe would abort
    other = tmp_path / "other.caffemodel"
    other.write_bytes(stored.SerializeToString())
    for args in ((str(not_a_net), models[0][1]), (models[0][0], str(tmp_path / "missing.caffemodel")),
                 (models[0][0], str(other))):
        result = _tool(*args, "--out", str(tmp_path / "x"), "--images", str(mtfl))
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert Path(args[0]).name in result.stderr or Path(args[1]).name in result.stderr
    result = _tool(*models[0], "--out", str(tmp_path / "x"), "--images", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "nowhere: no such dataset folder" in result.stderr


def test_export_tool_needs_real_faces_named(models, tmp_path):
    """No default dataset outside the repository: without --dataset the tool says so in one line."""
    for args in ((*models[0], "--out", str(tmp_path / "x")), ("--run", str(tmp_path / "run"))):
        result = _tool(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines() == [
            "export: error: name the real faces to check and calibrate on: --dataset ROOT "
            "(e.g. your copy of MTFL; make export DATA=ROOT)"]
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def run_export(models, mtfl, tmp_path_factory):
    """A run folder holding both levels, exported by `tools/export.py --run`."""
    run = finished_run_folder(tmp_path_factory.mktemp("runs") / "r", models)
    result = _tool("--run", str(run), "--images", str(mtfl), "--calibration", "8", "--validation", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    return run


def test_run_export_cascades_agree_in_every_backend(run_export, models, mtfl):
    run = run_export
    record = json.loads((run / "export" / "export.json").read_text())
    cascade = record["cascade"]
    assert {"caffe", "caffe-depthwise", "opencv"} <= set(cascade["agreement"])
    for name, diff in cascade["agreement"].items():
        if not name.endswith("int8"):
            assert diff["level1"] <= TOLERANCE and diff["cascade"] <= TOLERANCE, name
    # every normalisation landmarks.conventions.metrics reports, for the original and each format
    assert {"diagonal", "interocular"} <= set(cascade["original"]["cascade"])
    readme = (run / "export" / "README.md").read_text()
    assert "readNetFromCaffe" in readme and "InferenceSession" in readme
    # the README's file table names what is there
    for level in ("level1", "level2"):
        assert (run / "export" / level / "deploy.prototxt").is_file()
    # the exported cascade equals Cascade run here on the folded files
    images = sorted(str(p) for p in (mtfl / "faces").glob("*.jpg"))[:1]
    files = [record["levels"][lv]["files"]["caffe"] for lv in ("level1", "level2")]
    here = Cascade(*(backends.load("opencv", f) for f in files)).run(images[0])
    there = Cascade(*(backends.load("caffe", m) for m in models)).run(images[0])
    np.testing.assert_allclose(here.level2, there.level2, atol=1e-3)


def test_cascade_eval_gives_the_same_figures_in_every_backend(run_export, models, mtfl, tmp_path):
    """tools/cascade_eval.py through landmarks.runtime.backends: the original nets in Caffe (--l1/--l2)
    and the exported files in each float backend (--export) score the same images alike."""
    names = sorted(p.name for p in (mtfl / "faces").glob("*.jpg"))[:6]
    rows = {line.split()[0].split("\\")[-1]: line.split()[1:11] for line in (mtfl / "training.txt").read_text().splitlines()}
    landmarks = tmp_path / "lm.txt"  # CelebA's layout: name x1 y1 ... x5 y5
    landmarks.write_text("".join(f"{n} " + " ".join(f"{x} {y}" for x, y in zip(rows[n][:5], rows[n][5:])) + "\n"
                                 for n in names))
    tool = ROOT / "tools" / "cascade_eval.py"
    common = ["--landmarks", str(landmarks), "--images", str(mtfl / "faces"), "--quiet", "--boxes", "none"]

    def evaluate(*args):
        out = tmp_path / f"{len(list(tmp_path.iterdir()))}.json"
        done = subprocess.run([sys.executable, str(tool), *args, *common, "--json", str(out)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(out.read_text())

    reference = evaluate("--l1", *models[0], "--l2", *models[1])
    assert reference["images"] == len(names)
    for backend in ("caffe", "opencv", "onnxruntime", "ncnn"):
        if backends.unavailable(backend) or (backend == "ncnn" and export.pnnx_binary() is None):
            continue
        figures = evaluate("--export", str(run_export / "export"), "--backend", backend)
        assert figures["models"]["backend"] == backend
        for level in ("level1", "level2"):
            assert figures[level]["mean_error"] == pytest.approx(reference[level]["mean_error"], abs=1e-6), backend


def test_the_runtime_does_not_import_data_prep():
    code = ("import sys, landmarks.runtime.inference, landmarks.runtime.backends, landmarks.conventions.images, landmarks.deploy.export, "
            "landmarks.deploy.export_run, landmarks.evaluate.timing; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'data_prep'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_export_tool_reads_a_celeba_layout_split(models, mtfl, tmp_path):
    """--celeba: the set's own val split checks the export, its train split calibrates."""
    root = tmp_path / "celeba"
    (root / "Img" / "img_celeba").mkdir(parents=True)
    (root / "Anno").mkdir()
    (root / "Eval").mkdir()
    names = sorted(p.name for p in (mtfl / "faces").glob("*.jpg"))
    rows = {line.split()[0].split("\\")[-1]: line.split()[1:11] for line in (mtfl / "training.txt").read_text().splitlines()}
    for name in names:
        (root / "Img" / "img_celeba" / name).write_bytes((mtfl / "faces" / name).read_bytes())
    (root / "Anno" / "list_landmarks_celeba.txt").write_text(
        "".join(f"{n} " + " ".join(f"{x} {y}" for x, y in zip(rows[n][:5], rows[n][5:])) + "\n" for n in names))
    splits = ["1" if i < 5 else "0" for i in range(len(names))]  # 5 val, the rest train
    (root / "Eval" / "list_eval_partition.txt").write_text("".join(f"{n} {s}\n" for n, s in zip(names, splits)))
    out = tmp_path / "one"
    result = _tool(*models[0], "--out", str(out), "--celeba", str(root), "--calibration", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((out / "export.json").read_text())["check_images"] == 5
