"""tools/predict.py, the shipped-model default of the tools, and tools/cascade_eval.py on a
dataset root with --predictions. The nets are real Caffe nets built to output fixed points
(fc2 weights zero, its bias the points), so every point the tools write is known exactly."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from landmarks.conventions.crop import crop_box, start_box
from landmarks.conventions.draw import COLOURS
from landmarks.conventions.labels import denormalise
from support import LEVEL1_OUT, LEVEL2_OUT, ROOT, fixed_output_models
from workflow import runs

TOOLS = ROOT / "tools"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return fixed_output_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def shipped(models, tmp_path_factory):
    """A folder laid out as models/mtfl/ is: the four files under their shipped names."""
    folder = tmp_path_factory.mktemp("shipped")
    for level, (deploy, weights) in enumerate(models, start=1):
        (folder / f"level{level}_deploy.prototxt").write_bytes(Path(deploy).read_bytes())
        (folder / f"level{level}.caffemodel").write_bytes(Path(weights).read_bytes())
    return folder


def _expected(width, height, level2=True):
    first = denormalise(LEVEL1_OUT, width, height)
    return crop_box(first, width, height).unlabel(LEVEL2_OUT) if level2 else first


def _tool(name, *args, models_dir=None):
    env = dict(os.environ)
    if models_dir is not None:
        env[runs.SHIPPED_MODELS_ENV] = str(models_dir)
    return subprocess.run([sys.executable, str(TOOLS / name), *map(str, args)], capture_output=True, text=True,
                          timeout=180, env=env)


def _image(path, width, height, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((height, width, 3), value, np.uint8))
    return path


def _read_csv(path):
    """(header, {image: (5, 2) points}) of a CSV whose images are one face each (--whole-image)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert all(row[1] == "1" and row[2] == "" for row in rows[1:])  # one face, no detector score
    return rows[0], {row[0]: np.array([float(v) for v in row[7:]]).reshape(5, 2) for row in rows[1:]}


def test_folders_recursively_csv_and_drawings(models, tmp_path):
    photos = tmp_path / "photos"
    sizes = {photos / "a.jpg": (360, 300), photos / "sub" / "b.png": (200, 160), tmp_path / "c.JPG": (90, 120)}
    for path, (w, h) in sizes.items():
        _image(path, w, h)
    (photos / "notes.txt").write_text("not an image")
    (d1, w1), (d2, w2) = models
    out = tmp_path / "points.csv"
    result = _tool("predict.py", photos, tmp_path / "c.JPG", "--out", out, "--draw", tmp_path / "drawn",
                   "--l1", d1, w1, "--l2", d2, w2, "--batch", "2", "--whole-image")
    assert result.returncode == 0, result.stdout + result.stderr
    header, rows = _read_csv(out)
    assert header == ["image", "face", "score", "left", "top", "right", "bottom",
                      "x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4", "x5", "y5"]
    assert set(rows) == {str(p) for p in sizes}
    boxes = {row[0]: [float(v) for v in row[3:7]] for row in list(csv.reader(open(out)))[1:]}
    assert all(boxes[str(p)] == [0, 0, w, h] for p, (w, h) in sizes.items())  # the whole image is the face
    for path, (w, h) in sizes.items():
        np.testing.assert_allclose(rows[str(path)], _expected(w, h), atol=1e-3)
    drawn = cv2.imread(str(tmp_path / "drawn" / "sub" / "b_points.jpg"))
    assert drawn.shape == (160, 200, 3)
    x, y = np.rint(_expected(200, 160)[2]).astype(int)
    assert np.abs(drawn[y, x].astype(int) - COLOURS["level2"]).max() <= 60
    assert (tmp_path / "drawn" / "a_points.jpg").exists() and (tmp_path / "drawn" / "c_points.jpg").exists()


def test_level1_only_bad_images_and_bad_arguments(models, tmp_path):
    folder = tmp_path / "in"
    _image(folder / "good.png", 100, 80)
    (folder / "broken.jpg").write_bytes(b"not a JPEG at all")
    (d1, w1), _ = models
    out = tmp_path / "p.csv"
    result = _tool("predict.py", folder, "--out", out, "--l1", d1, w1, "--whole-image")
    assert result.returncode == 1 and "broken.jpg" in result.stderr  # named, left out, the rest written
    _, rows = _read_csv(out)
    assert list(rows) == [str(folder / "good.png")]
    np.testing.assert_allclose(rows[str(folder / "good.png")], _expected(100, 80, level2=False), atol=1e-3)
    missing = _tool("predict.py", tmp_path / "nowhere", "--l1", d1, w1)
    assert missing.returncode == 2 and "nowhere: no such file or folder" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_tools_use_the_shipped_models_by_default(shipped, tmp_path):
    photo = _image(tmp_path / "photo.jpg", 240, 200)
    out = tmp_path / "p.csv"
    result = _tool("predict.py", photo, "--out", out, "--quiet", "--whole-image", models_dir=shipped)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(_read_csv(out)[1][str(photo)], _expected(240, 200), atol=1e-3)
    demo = _tool("demo.py", photo, "--out", tmp_path / "demo", models_dir=shipped)
    assert demo.returncode == 0, demo.stderr
    assert "level 2:" in demo.stdout and (tmp_path / "demo" / "photo_cascade.jpg").exists()
    assert "start:   the whole image" in demo.stdout  # --boxes auto: MTCNN finds no face on a grey picture


def test_a_photo_without_a_face_is_a_named_line_not_an_error(models, tmp_path):
    photo = _image(tmp_path / "wall.jpg", 320, 240)
    (d1, w1), (d2, w2) = models
    out = tmp_path / "p.csv"
    result = _tool("predict.py", photo, "--out", out, "--l1", d1, w1, "--l2", d2, w2, "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"{photo}: no face found" in result.stdout and "0 face(s) in 1 image(s)" in result.stdout
    assert out.read_text().splitlines() == [",".join(["image", "face", "score", "left", "top", "right", "bottom"]
                                                     + [f"{a}{i}" for i in range(1, 6) for a in "xy"])]
    for bad in (["--min-face", "8"], ["--max-faces", "-1"]):
        refused = _tool("predict.py", photo, "--out", out, "--l1", d1, w1, *bad)
        assert refused.returncode == 2 and bad[0] in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize("tool, args", [("predict.py", ["--quiet"]), ("demo.py", []),
                                        ("cascade_eval.py", ["--landmarks", "LM", "--images", "."])])
def test_missing_shipped_models_are_one_clear_line(tool, args, tmp_path):
    photo = _image(tmp_path / "photo.jpg", 64, 64)
    (tmp_path / "LM").write_text("photo.jpg " + " ".join(["30"] * 10) + "\n")
    args = [str(tmp_path / "LM") if a == "LM" else str(tmp_path) if a == "." else a for a in args]
    positional = [photo] if tool != "cascade_eval.py" else []
    result = _tool(tool, *positional, *args, models_dir=tmp_path / "empty")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no model given" in result.stderr and "shipped models are missing" in result.stderr
    assert str(tmp_path / "empty" / "level1.caffemodel") in result.stderr and "Traceback" not in result.stderr


def test_cascade_eval_on_a_sun_root_writes_both_predictions(models, tmp_path):
    """A Sun et al. list (backslash paths, boxes): every normalisation is printed and saved,
    and --predictions / --level1-predictions hold the points the nets output."""
    root = tmp_path / "sun"
    sizes = [(120, 100), (80, 80), (150, 90), (100, 100)]
    lines = []
    for i, (w, h) in enumerate(sizes):
        _image(root / "net" / f"{i}.jpg", w, h, value=60 + 30 * i)
        truth = _expected(w, h) + np.array([1.0 + i, 0.0])  # level 2 is off by 1 + i px to the right
        box = (0, w / 2, 0, h)  # left right top bottom: half the width
        lines.append(f"net\\{i}.jpg " + " ".join(f"{v:g}" for v in box) + " " + " ".join(f"{v:g}" for v in truth.reshape(-1)))
    (root / "trainImageList.txt").write_text("\n".join(lines) + "\n")
    (d1, w1), (d2, w2) = models
    out = tmp_path / "cascade.txt"
    first = tmp_path / "level1.txt"
    result = _tool("cascade_eval.py", "--dataset", root, "--l1", d1, w1, "--l2", d2, w2, "--predictions", out,
                   "--level1-predictions", first, "--json", tmp_path / "eval.json", "--quiet", "--boxes", "none")
    assert result.returncode == 0, result.stdout + result.stderr
    names = [f"net/{i}.jpg" for i in range(len(sizes))]
    for path, level2 in ((out, True), (first, False)):
        rows = [line.split() for line in path.read_text().splitlines()]
        assert sorted(r[0] for r in rows) == names
        for row in rows:
            w, h = sizes[int(Path(row[0]).stem)]
            np.testing.assert_allclose(np.array(row[1:], dtype=float).reshape(5, 2), _expected(w, h, level2), atol=1e-3)
    figures = json.loads((tmp_path / "eval.json").read_text())
    iod = [np.linalg.norm(_expected(w, h)[0] - _expected(w, h)[1]) for w, h in sizes]  # truth's eyes as level 2's
    assert figures["level2"]["interocular"]["mean_error"] == pytest.approx(np.mean([(1 + i) / d for i, d in enumerate(iod)]), rel=1e-3)
    assert figures["level2"]["box"]["mean_error"] == pytest.approx(np.mean([(1 + i) / (w / 2) for i, (w, _) in enumerate(sizes)]), rel=1e-3)
    assert figures["dataset_format"] == "sun" and figures["images"] == len(sizes)
    assert "IOD" in result.stdout and "box" in result.stdout


def test_cascade_eval_starts_from_the_dataset_boxes(models, tmp_path):
    """--boxes dataset: level 1 first looks at crop.start_box of each given box, so the points are
    its outputs mapped back from that region; --boxes dataset on a dataset without boxes is refused."""
    root = tmp_path / "sun"
    _image(root / "0.jpg", 800, 600)  # the start region (253 px) is under WHOLE_IMAGE_ABOVE of the side
    box = (100, 220, 60, 180)  # left right top bottom
    (root / "trainImageList.txt").write_text("0.jpg " + " ".join(map(str, box)) + " " + " ".join(["150"] * 10) + "\n")
    (d1, w1), (d2, w2) = models
    out = tmp_path / "first.txt"
    result = _tool("cascade_eval.py", "--dataset", root, "--l1", d1, w1, "--level1-predictions", out, "--quiet",
                   "--subset", "all", "--boxes", "dataset", "--recipe", "article")
    assert result.returncode == 0, result.stdout + result.stderr
    start = start_box((100, 60, 220, 180), 800, 600)
    expected = start.unlabel(LEVEL1_OUT)
    np.testing.assert_allclose(np.array(out.read_text().split()[1:], float).reshape(5, 2), expected, atol=1e-3)
    (tmp_path / "lm.txt").write_text("0.jpg " + " ".join(["150"] * 10) + "\n")
    refused = _tool("cascade_eval.py", "--landmarks", tmp_path / "lm.txt", "--images", root, "--l1", d1, w1,
                    "--boxes", "dataset")
    assert refused.returncode == 2 and "gives no face boxes" in refused.stderr and "Traceback" not in refused.stderr
