"""The cascade shipped in models/mtfl/: it loads, it finds the five points of real faces it
never trained on (the MTFL copy's validation split under the recipe's seed, errata applied)
within bounds set from its measured validation error (models/mtfl/README.md), and
tools/predict.py uses it by default and writes one CSV row per image."""
import argparse
import csv
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np

from data_prep import readers, stress
from landmarks.conventions.metrics import interocular_errors
from landmarks.runtime.backends import CaffeNet
from landmarks.runtime.inference import Cascade, recipe_named
from support import MTFL, ROOT, needs_mtfl
from workflow import runs

FACES = 64  # the first validation faces: enough for a stable mean, a second of CPU
SEED = 1  # the recipe's (make level1 SEED=1, the default): the split the models did not train on
# The shipped cascade's mean inter-ocular error on the whole validation split is in
# models/mtfl/README.md; these bounds leave room for a 64-face sample of it, and fail for a
# level 1 alone, for a cascade whose points are swapped or shifted, or for untrained weights.
MEAN_BOUND = 0.08  # the whole split: 5.7%, this sample 4.8% (models of 2026-11-26, `real` recipe)
FACE_BOUND = 0.25  # no face of the sample is lost (their worst: 7.2%)
ROLLED_BOUND = 0.08  # the sample rolled by 35-55 degrees, real recipe (measured 4.8%; article 33%)
PHOTO_BOUND = 0.12
COLLAGE_BOUND = 0.15  # every face of a collage (measured: 4.5-7.6% on a collage of six)  # the sample at half a large photo's side, anywhere (measured 5.4%; the models before: 120%)



def _validation_faces():
    data = readers.load(str(MTFL), seed=SEED)
    faces = data.split("val")[:FACES]
    return [data.image_path(e.name) for e in faces], np.stack([e.points for e in faces])


def _shipped_cascade(recipe=None):
    """The shipped nets, run by `recipe` (default: the one shipped.json says, as the tools do)."""
    models = runs.shipped_models()
    recipe = recipe or runs.recipe_name(argparse.Namespace(run=None, l1=None, recipe="auto"))
    return Cascade(CaffeNet(*map(str, models["level1"])), CaffeNet(*map(str, models["level2"])),
                   recipe_named(recipe))


def _errors(cascade, paths, truth):
    """(level 1's, the cascade's) inter-ocular errors on the images."""
    first, sizes = cascade.level1_batch(paths)
    second, _ = cascade.level2_batch(paths, first, sizes)
    return interocular_errors(np.stack(first), truth), interocular_errors(np.stack(second), truth)


def test_the_shipped_files_are_there_and_load():
    models = runs.shipped_models()
    for level in ("level1", "level2"):
        deploy, weights = models[level]
        assert weights.stat().st_size < 2_000_000  # about 1 MB each, as shipped
        net = CaffeNet(str(deploy), str(weights))
        assert net.size == 48


@needs_mtfl
def test_the_cascade_finds_real_faces():
    cascade = _shipped_cascade()
    assert cascade.recipe.name == "real"  # the recipe the shipped models were trained for
    paths, truth = _validation_faces()
    first, errors = _errors(cascade, paths, truth)
    assert np.nanmean(errors) < MEAN_BOUND, f"mean inter-ocular error {np.nanmean(errors):.3f}"
    assert np.nanmax(errors) < FACE_BOUND, f"worst face {np.nanmax(errors):.3f}"
    # level 2 earns its place: it refines level 1 on these faces
    assert np.nanmean(errors) < np.nanmean(first)


@needs_mtfl
def test_the_real_recipe_sets_rolled_faces_upright(tmp_path):
    """The same faces rolled by 35 to 55 degrees either way: the real recipe (level 1's second
    look and level 2 on levelled crops) keeps them near their upright error; the article's
    single look with an axis-aligned crop does clearly worse."""
    paths, truth = _validation_faces()
    rolled_paths, rolled_truth = [], []
    rng = np.random.default_rng(0)
    for i, (path, points) in enumerate(zip(paths, truth)):
        image = cv2.imread(path)
        h, w = image.shape[:2]
        angle = rng.uniform(35, 55) * rng.choice([-1, 1])
        m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
        out = tmp_path / f"rolled{i}.jpg"
        cv2.imwrite(str(out), cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        rolled_paths.append(str(out))
        rolled_truth.append(points @ m[:, :2].T + m[:, 2])
    rolled_truth = np.stack(rolled_truth)
    _, real = _errors(_shipped_cascade("real"), rolled_paths, rolled_truth)
    _, article = _errors(_shipped_cascade("article"), rolled_paths, rolled_truth)
    assert np.nanmean(real) < ROLLED_BOUND, f"real recipe, rolled faces: {np.nanmean(real):.3f}"
    assert np.nanmean(real) < 0.85 * np.nanmean(article), (np.nanmean(real), np.nanmean(article))


@needs_mtfl
def test_the_cascade_finds_a_small_face_anywhere_in_a_large_photo(tmp_path):
    """The same faces enlarged 4x and set at random places in photos twice their side
    (data_prep.stress --photo 0.5): level 1's first look must find the face before the
    second look and level 2 can refine it."""
    paths, truth = _validation_faces()
    rng = np.random.default_rng(0)
    photo_paths, photo_truth = [], []
    for i, (path, points) in enumerate(zip(paths, truth)):
        photo, moved = stress.photo_image(path, points, 0.5, 4, rng.uniform(0, 1, size=2))
        assert photo.shape[:2] == (640, 640)
        out = tmp_path / f"photo{i}.jpg"
        cv2.imwrite(str(out), photo, [cv2.IMWRITE_JPEG_QUALITY, 90])
        photo_paths.append(str(out))
        photo_truth.append(moved)
    _, errors = _errors(_shipped_cascade(), photo_paths, np.stack(photo_truth))
    assert np.nanmean(errors) < PHOTO_BOUND, f"faces at half a photo's side: {np.nanmean(errors):.3f}"


def _predict_tool(*args):
    env = dict(os.environ)
    env.pop(runs.SHIPPED_MODELS_ENV, None)
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "predict.py"), *map(str, args), "--quiet"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done


def _faces_by_image(csv_path):
    rows = list(csv.reader(open(csv_path)))
    assert rows[0][:7] == ["image", "face", "score", "left", "top", "right", "bottom"]
    faces = {}
    for row in rows[1:]:
        faces.setdefault(row[0], []).append(np.array(row[7:], float).reshape(5, 2))
    return faces


@needs_mtfl
def test_predict_tool_uses_the_shipped_models(tmp_path):
    paths, truth = _validation_faces()
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    for i, path in enumerate(paths[:6]):
        shutil.copy(path, folder / ("more" if i % 2 else "") / f"face{i}.jpg")
    out = tmp_path / "points.csv"
    _predict_tool(folder, "--out", out, "--draw", tmp_path / "drawn")
    faces = _faces_by_image(out)
    for i in range(6):  # MTCNN finds the face (perhaps others behind it); the cascade lands on it
        candidates = faces[str(folder / ("more" if i % 2 else "") / f"face{i}.jpg")]
        error = min(interocular_errors(points[None], truth[i][None])[0] for points in candidates)
        assert error < FACE_BOUND, (i, error)
    assert len(list((tmp_path / "drawn").rglob("*_points.jpg"))) == 6


@needs_mtfl
def test_every_face_of_a_collage_is_found_and_landmarked(tmp_path):
    """Collages of 2 to 8 real faces at different sizes, anywhere on a larger picture: each face
    has a row whose points lie within COLLAGE_BOUND of its true points (issue: in the wild)."""
    paths, truth = _validation_faces()
    rng = np.random.default_rng(5)
    photos, truths = [], []
    for count in (2, 5, 8):
        canvas = cv2.GaussianBlur(rng.integers(40, 220, (900, 1200, 3), dtype=np.uint8), (41, 41), 12)
        placed, cell = [], (1200 // 4, 900 // 2)
        for k, index in enumerate(rng.choice(len(paths), count, replace=False)):
            image = cv2.imread(paths[index])
            scale = rng.uniform(1.0, 2.6)
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
            h, w = image.shape[:2]
            x = (k % 4) * cell[0] + int(rng.integers(0, max(1, cell[0] - w)))
            y = (k // 4) * cell[1] + int(rng.integers(0, max(1, cell[1] - h)))
            canvas[y:y + h, x:x + w] = image
            placed.append((truth[index] + 0.5) * scale - 0.5 + [x, y])
        photos.append(tmp_path / f"collage{count}.jpg")
        cv2.imwrite(str(photos[-1]), canvas, [cv2.IMWRITE_JPEG_QUALITY, 95])
        truths.append(placed)
    out = tmp_path / "faces.csv"
    _predict_tool(*photos, "--out", out)
    faces = _faces_by_image(out)
    for photo, placed in zip(photos, truths):
        found = faces.get(str(photo), [])
        for points in placed:
            error = min(interocular_errors(p[None], points[None])[0] for p in found)
            assert error < COLLAGE_BOUND, (photo.name, error)
