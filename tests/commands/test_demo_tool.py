"""tools/demo.py: where each set of points is drawn and in which colour. The nets are built to
output fixed points (fc2 weights zero, its bias the points), so where level 1, the crop and
level 2 land is known exactly."""
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from landmarks.conventions.crop import crop_box
from landmarks.conventions.draw import COLOURS
from landmarks.conventions.labels import as_rows, denormalise
from support import LEVEL1_OUT, LEVEL2_OUT, ROOT, finished_run_folder, fixed_output_models

TOOL = ROOT / "tools" / "demo.py"
WIDTH, HEIGHT = 360, 300
TRUTH = np.array([[60, 40], [300, 40], [180, 270], [40, 250], [320, 250]], dtype=np.float64)  # far from both
TOLERANCE = 60  # JPEG (quality 95, 4:2:0 chroma) blurs the small dots' colour somewhat


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return fixed_output_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def image(tmp_path):
    """A plain grey PNG ('any image', not only CelebA JPEGs)."""
    path = tmp_path / "face one.png"
    cv2.imwrite(str(path), np.full((HEIGHT, WIDTH, 3), 128, np.uint8))
    return path


def _demo(*args):
    result = subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, timeout=120)
    return result


def _near(pixel, colour):
    return np.abs(pixel.astype(int) - np.array(colour)).max() <= TOLERANCE


def test_points_are_drawn_in_their_colours(models, image, tmp_path):
    landmarks = tmp_path / "lm.txt"
    landmarks.write_text("face_one.png " + " ".join(f"{v:g}" for v in as_rows(TRUTH)) + "\n")
    named = tmp_path / "face_one.png"
    shutil.copy(image, named)
    (d1, w1), (d2, w2) = models
    result = _demo(named, "--l1", d1, w1, "--l2", d2, w2, "--landmarks", landmarks, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    drawn = cv2.imread(str(tmp_path / "out" / "face_one_cascade.jpg"))
    assert drawn.shape == (HEIGHT, WIDTH, 3)
    level1 = denormalise(LEVEL1_OUT, WIDTH, HEIGHT)
    box = crop_box(level1, WIDTH, HEIGHT)
    assert not box.fallback
    level2 = box.unlabel(LEVEL2_OUT)
    for points, colour in ((TRUTH, COLOURS["truth"]), (level1, COLOURS["level1"]), (level2, COLOURS["level2"])):
        for x, y in np.rint(points).astype(int):
            assert _near(drawn[y, x], colour), (x, y, drawn[y, x], colour)
    # the crop box (yellow, 1 px: JPEG leaves it yellowish) on its edge, away from the dots;
    # the grey background is left alone
    edge = drawn[box.y0, (box.x0 + box.x1) // 2].astype(int)
    assert min(edge[1], edge[2]) - edge[0] > 60, edge
    assert _near(drawn[5, 5], (128, 128, 128))
    # the printed points are level 1's and level 2's, in original pixels
    assert f"nose ({level1[2, 0]:.1f}, {level1[2, 1]:.1f})" in result.stdout
    assert f"nose ({level2[2, 0]:.1f}, {level2[2, 1]:.1f})" in result.stdout
    assert "truth:" in result.stdout and "error:" in result.stdout


def test_without_truth_or_level2_and_a_bad_image(models, image, tmp_path):
    (d1, w1), _ = models
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    result = _demo(image, bad, "--l1", d1, w1, "--out", tmp_path / "out")
    assert result.returncode == 1  # the broken image is reported, the good one still drawn
    assert "broken.jpg" in result.stdout
    drawn = cv2.imread(str(tmp_path / "out" / "face one_cascade.jpg"))
    x, y = np.rint(denormalise(LEVEL1_OUT, WIDTH, HEIGHT)[0]).astype(int)
    assert _near(drawn[y, x], COLOURS["level1"])
    assert not (tmp_path / "out" / "broken_cascade.jpg").exists()


def test_run_folder_models(models, image, tmp_path):
    run = finished_run_folder(tmp_path / "runs" / "x", models)
    result = _demo(image, "--run", run)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (run / "demo" / "face one_cascade.jpg").exists()
    assert "level 2:" in result.stdout


def test_two_images_of_one_name_get_two_outputs(models, image, tmp_path):
    (d1, w1), _ = models
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(image, tmp_path / folder / "x.png")
    result = _demo(tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", "--l1", d1, w1, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x-2_cascade.jpg", "x_cascade.jpg"]
    assert "b/x.png" in result.stdout and "x-2_cascade.jpg" in result.stdout
