"""tools/cascade_eval.py on both levels trained here with the real `caffe train` (smoke
schedule, synthetic faces): its figures against an independent run of the cascade, header and
header-less landmark files, and skipped or refused entries."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from data_prep import readers
from data_prep.synthetic import render_sample
from landmarks.common import caffe_runtime
from landmarks.conventions.crop import crop_box
from landmarks.conventions.images import read_level1, read_level2
from landmarks.conventions.labels import as_rows, normalise
from landmarks.nets import mobilenet as nets
from landmarks.nets.generate import write_level_files
from landmarks.nets.solvers import get_schedule
from landmarks.runtime.backends import CaffeNet
from landmarks.runtime.inference import Cascade
from support import MTFL, ROOT, needs_mtfl

TOOL = ROOT / "tools" / "cascade_eval.py"
IMAGES = 12  # training and evaluation set alike: the test checks bookkeeping, not accuracy
HEADER = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """IMAGES synthetic JPEGs and their true points: (image folder, [(name, (5, 2) points)])."""
    folder = tmp_path_factory.mktemp("faces")
    entries = []
    for index in range(IMAGES):
        sample = render_sample(7, index)
        (folder / sample.name).write_bytes(sample.jpeg())
        entries.append((sample.name, sample.label.astype(np.float64)))
    return folder, entries


def _landmark_file(path, entries, header=True, extra=()):
    lines = [str(len(entries) + len(extra)), HEADER] if header else []
    lines += [" ".join([name] + [f"{v:g}" for v in as_rows(points)]) for name, points in entries]
    lines += list(extra)
    path.write_text("\n".join(lines) + "\n")
    return path


def _train(out_dir, level, inputs, labels):
    """20 real `caffe train` iterations on these inputs; returns (deploy, caffemodel)."""
    data = out_dir / "data"
    (data / "hdf5").mkdir(parents=True)
    with h5py.File(data / "hdf5" / "all.h5", "w") as f:
        f["data"] = np.stack(inputs).astype(np.float32)
        f["label"] = np.stack([as_rows(p) for p in labels]).astype(np.float32)
    for split in ("train", "test"):
        (data / "hdf5" / f"{split}.txt").write_text(f"{data / 'hdf5' / 'all.h5'}\n")
    paths = write_level_files(out_dir, level, nets.NetConfig(), "hdf5", data, get_schedule("smoke"), mode="CPU")
    result = subprocess.run([caffe_runtime.caffe_binary(), "train", f"--solver={paths['solver']}"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return str(paths["deploy"]), str(out_dir / "snapshots" / f"level{level}_iter_20.caffemodel")


@pytest.fixture(scope="module")
def models(faces, tmp_path_factory):
    """Level 1 trained on whole images, level 2 on crops around the true points."""
    folder, entries = faces
    inputs, labels, crops, crop_labels = [], [], [], []
    for name, truth in entries:
        image, (w, h) = read_level1(str(folder / name))
        inputs.append(image)
        labels.append(normalise(truth, w, h))
        box = crop_box(truth, w, h)
        crops.append(read_level2(str(folder / name), box)[0])
        crop_labels.append(box.labels(truth))
    level1 = _train(tmp_path_factory.mktemp("level1"), 1, inputs, labels)
    level2 = _train(tmp_path_factory.mktemp("level2"), 2, crops, crop_labels)
    return level1, level2


def _evaluate(models, landmarks, images, out_json, *extra):
    (d1, w1), (d2, w2) = models
    result = subprocess.run([sys.executable, str(TOOL), "--l1", d1, w1, "--l2", d2, w2, "--landmarks", str(landmarks),
                             "--images", str(images), "--json", str(out_json), "--quiet", "--boxes", "none", *extra],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout)
    return json.loads(Path(out_json).read_text()), result.stdout


def _independent_errors(predicted, truth, sizes):
    """(N, 5) point errors over the diagonal, written out here rather than imported."""
    diagonal = np.array([np.sqrt(w * w + h * h) for w, h in sizes])
    return np.sqrt(((np.stack(predicted) - np.stack(truth)) ** 2).sum(axis=-1)) / diagonal[:, None]


def test_errors_equal_an_independent_run_of_the_cascade(models, faces, tmp_path):
    folder, entries = faces
    figures, stdout = _evaluate(models, _landmark_file(tmp_path / "lm.txt", entries), folder, tmp_path / "out.json",
                                "--batch", "5")  # batches of 5, 5, 2: the tool's batching is exercised
    # one image at a time, through Cascade.run, not the tool's batches
    cascade = Cascade(CaffeNet(*models[0]), CaffeNet(*models[1]))
    results = [cascade.run(str(folder / name)) for name, _ in entries]
    truth = [points for _, points in entries]
    sizes = [r.size for r in results]
    for level in ("level1", "level2"):
        errors = _independent_errors([getattr(r, level) for r in results], truth, sizes)
        assert figures[level]["images"] == IMAGES
        np.testing.assert_allclose(figures[level]["mean_error"], errors.mean(), rtol=1e-4)
        np.testing.assert_allclose(figures[level]["per_point"], errors.mean(axis=0), rtol=1e-4)
        np.testing.assert_allclose(figures[level]["median_error"], np.median(errors.mean(axis=1)), rtol=1e-4)
    assert figures["images"] == IMAGES and figures["skipped"]["count"] == 0
    # the two levels differ (level 2 really ran on crops), and the table shows both
    assert figures["level1"]["mean_error"] != figures["level2"]["mean_error"]
    assert "level 1" in stdout and "cascade (level 2)" in stdout and "left_eye" in stdout


def test_header_and_headerless_files_give_identical_results(models, faces, tmp_path):
    folder, entries = faces
    with_header, _ = _evaluate(models, _landmark_file(tmp_path / "a.txt", entries, header=True), folder, tmp_path / "a.json")
    without, _ = _evaluate(models, _landmark_file(tmp_path / "b.txt", entries, header=False), folder, tmp_path / "b.json")
    assert with_header["header_count"] == IMAGES and without["header_count"] == -1
    for key in ("level1", "level2", "images"):
        assert with_header[key] == without[key]


def test_missing_and_corrupt_images_are_skipped_and_counted(models, faces, tmp_path):
    folder, entries = faces
    images = tmp_path / "images"
    images.mkdir()
    for name, _ in entries:
        os.symlink(folder / name, images / name)
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    bad = [("missing.jpg", entries[0][1]), ("corrupt.jpg", entries[1][1])]
    # the bad ones sit in the middle of a batch: the rest of that batch must still count
    mixed = entries[:3] + bad + entries[3:]
    unsafe = "../" + entries[0][0] + " " + " ".join(["10"] * 10)
    landmarks = _landmark_file(tmp_path / "lm.txt", mixed, extra=[unsafe])
    figures, stdout = _evaluate(models, landmarks, images, tmp_path / "out.json", "--batch", "4")
    assert figures["images"] == IMAGES
    assert figures["skipped"]["count"] == 2
    assert {s["name"] for s in figures["skipped"]["items"]} == {"missing.jpg", "corrupt.jpg"}
    assert "missing.jpg" in stdout and "corrupt.jpg" in stdout
    assert figures["refused_lines"]["count"] == 1 and figures["refused_lines"]["items"][0]["kind"] == "unsafe image name"
    clean, _ = _evaluate(models, _landmark_file(tmp_path / "clean.txt", entries), folder, tmp_path / "clean.json",
                         "--batch", "4")
    for level in ("level1", "level2"):
        np.testing.assert_allclose(figures[level]["mean_error"], clean[level]["mean_error"], rtol=1e-5)


@needs_mtfl
def test_baseline_mtcnn_is_scored_beside_the_cascade(tmp_path):
    """--baseline mtcnn: MTCNN v1 and v2 from their own detection, on the same real faces, in the
    same normalisations; the shipped cascade starts from MTCNN's boxes by default (--boxes auto)."""
    data = readers.load(str(MTFL), seed=1)
    root = tmp_path / "mtfl"
    lines = []
    for entry in data.split("val")[:8]:
        target = root / entry.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data.image_path(entry.name), target)
        xs, ys = np.asarray(entry.points).T
        lines.append(entry.name.replace("/", "\\") + " " + " ".join(f"{v:g}" for v in [*xs, *ys]) + " 1 1 1 1")
    (root / "training.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "eval.json"
    done = subprocess.run([sys.executable, str(TOOL), "--dataset", str(root), "--subset", "all", "--baseline", "mtcnn",
                           "--json", str(out), "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["start"]["boxes"] == "mtcnn" and figures["images"] == 8
    assert sum(b["images"] for b in figures["by_turn"]) == 8 and "IOD error by head turn" in done.stdout
    baselines = figures["baselines"]
    assert set(baselines) == {"mtcnn-onet-detected", "mtcnn-lnet-detected"}  # MTFL gives no boxes
    for key, row in baselines.items():
        assert row["images"] + row["missed"] == 8 and row["images"] >= 7
        assert row["interocular"]["mean_error"] < 0.1 and row["ours_same_images"] < 0.1
        assert row["label"] in done.stdout
        assert sum(b["images"] for b in row["by_turn"]) == row["images"]  # MTCNN's error by head turn too
