"""The cascade shipped in models/mtfl/: it loads, it finds the five points of real faces it
never trained on (the MTFL copy's validation split under the recipe's seed, errata applied)
within bounds set from its measured validation error (models/mtfl/README.md), and
tools/predict.py uses it by default and writes one CSV row per image."""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_prep import dataset
from landmarks import runs
from landmarks.inference import Cascade, DeployNet
from landmarks.metrics import interocular_errors

ROOT = Path(__file__).resolve().parent.parent
MTFL = Path(os.environ.get("LANDMARKS_MTFL_DIR") or ROOT.parent / "shared" / "data" / "mtfl")
FACES = 64  # the first validation faces: enough for a stable mean, a second of CPU
SEED = 1  # the recipe's (make level1 SEED=1, the default): the split the models did not train on
# The shipped cascade's mean inter-ocular error on the whole validation split is in
# models/mtfl/README.md; these bounds leave room for a 64-face sample of it, and fail for a
# level 1 alone, for a cascade whose points are swapped or shifted, or for untrained weights.
MEAN_BOUND = 0.11  # the whole split: 7.3% (models of 2026-11-26; the 20k-iteration ones: 8.2%)
FACE_BOUND = 0.40  # no face of the sample is lost altogether (their worst: 24%)

needs_mtfl = pytest.mark.skipif(not (MTFL / "training.txt").is_file(),
                                reason=f"{MTFL}: the MTFL copy is not on this machine (set LANDMARKS_MTFL_DIR)")


def _validation_faces():
    data = dataset.load(str(MTFL), seed=SEED)
    faces = data.split("val")[:FACES]
    return [data.image_path(e.name) for e in faces], np.stack([e.points for e in faces])


def test_the_shipped_files_are_there_and_load():
    models = runs.shipped_models()
    for level in ("level1", "level2"):
        deploy, weights = models[level]
        assert weights.stat().st_size < 2_000_000  # about 1 MB each, as shipped
        net = DeployNet(str(deploy), str(weights))
        assert net.size == 48


@needs_mtfl
def test_the_cascade_finds_real_faces():
    models = runs.shipped_models()
    cascade = Cascade(DeployNet(*map(str, models["level1"])), DeployNet(*map(str, models["level2"])))
    paths, truth = _validation_faces()
    first, sizes = cascade.level1_batch(paths)
    second, _ = cascade.level2_batch(paths, first, sizes)
    errors = interocular_errors(np.stack(second), truth)
    assert np.nanmean(errors) < MEAN_BOUND, f"mean inter-ocular error {np.nanmean(errors):.3f}"
    assert np.nanmax(errors) < FACE_BOUND, f"worst face {np.nanmax(errors):.3f}"
    # level 2 earns its place: it refines level 1 on these faces
    assert np.nanmean(errors) < np.nanmean(interocular_errors(np.stack(first), truth))


@needs_mtfl
def test_predict_tool_uses_the_shipped_models(tmp_path):
    paths, truth = _validation_faces()
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    for i, path in enumerate(paths[:6]):
        shutil.copy(path, folder / ("more" if i % 2 else "") / f"face{i}.jpg")
    out = tmp_path / "points.csv"
    env = dict(os.environ)
    env.pop(runs.SHIPPED_MODELS_ENV, None)
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "predict.py"), str(folder), "--out", str(out),
                           "--draw", str(tmp_path / "drawn"), "--quiet"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["name"] + [f"{a}{i}" for i in range(1, 6) for a in "xy"]
    assert len(rows) == 7
    by_name = {r[0]: np.array(r[1:], float).reshape(5, 2) for r in rows[1:]}  # names: the image paths
    for i in range(6):
        points = by_name[str(folder / ("more" if i % 2 else "") / f"face{i}.jpg")]
        error = interocular_errors(points[None], truth[i][None])[0]
        assert error < FACE_BOUND, (i, error)
    assert len(list((tmp_path / "drawn").rglob("*_points.jpg"))) == 6
