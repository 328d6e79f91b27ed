"""data_prep.predictions and data_prep.level2: the predictions file, crops, threshold, fallbacks."""
import json

import h5py
import numpy as np
import pytest

from data_prep import celeba, level2, synthetic
from data_prep.predictions import PredictionsError, read_predictions, write_predictions
from landmarks.conventions.crop import crop_box, upright_box
from landmarks.conventions.images import read_level2
from landmarks.conventions.labels import as_points
from landmarks.conventions.metrics import image_errors


@pytest.fixture(scope="module")
def celeba_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "celeba"
    synthetic.generate(root, 24, seed=5, workers=1, progress=False)
    return root


def test_predictions_round_trip(tmp_path):
    path = tmp_path / "p.txt"
    points = np.arange(30, dtype=float).reshape(3, 5, 2) + 0.25
    points[2, 0, 0] = np.nan
    write_predictions(path, ["a.jpg", "b.jpg", "c.jpg"], points, comments=["level 1", "weights x"])
    text = path.read_text().splitlines()
    assert text[:2] == ["# level 1", "# weights x"] and text[2].startswith("a.jpg 0.2500 1.2500")
    p = read_predictions(path)
    assert p.names == ["a.jpg", "b.jpg", "c.jpg"] and p.comments == ["level 1", "weights x"]
    np.testing.assert_array_equal(p.points, points)
    np.testing.assert_array_equal(p.as_dict()["b.jpg"], points[1])
    assert [f.name for f in tmp_path.iterdir()] == ["p.txt"]  # no temporary left behind


@pytest.mark.parametrize("line, message", [
    ("a.jpg 1 2 3", r"p.txt:3: 4 fields, expected 11"),
    ("a.jpg 1 2 3 4 5 6 7 8 9 ten", r"p.txt:3: non-numeric value 'ten'"),
    ("../a.jpg 1 2 3 4 5 6 7 8 9 10", r"p.txt:3: image name '../a.jpg' refused"),
    ("x.jpg 1 2 3 4 5 6 7 8 9 10", r"p.txt:3: x.jpg repeated \(first on line 2\)"),
    ("# late comment", r"p.txt:3: comment lines are allowed only at the top"),
])
def test_bad_predictions_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "p.txt"
    path.write_text("# header\nx.jpg 1 2 3 4 5 6 7 8 9 10\n" + line + "\n")
    with pytest.raises(PredictionsError, match=message):
        read_predictions(path)


def _predictions(root, tmp_path, edit=None):
    """Ground truth plus a little noise, as a level-1 net might predict; `edit(names, points)`."""
    ds = celeba.load(root)
    names = [e.name for e in ds.entries]
    rng = np.random.default_rng(0)
    points = np.stack([e.points for e in ds.entries]) + rng.normal(0, 1.5, (len(names), 5, 2))
    if edit:
        names, points = edit(ds, names, points)
    path = tmp_path / "pred.txt"
    write_predictions(path, names, points)
    return path, ds


def run(root, pred, out, *extra):
    return level2.main(["--dataset", str(root), "--predictions", str(pred), "--out", str(out), "--quiet", *extra])


def test_crops_labels_threshold_and_fallbacks(celeba_root, tmp_path):
    first = {}

    def edit(ds, names, points):
        by_split = {s: [i for i, e in enumerate(ds.entries) if e.split == s] for s in celeba.SPLITS}
        t0, t1 = by_split["train"][:2]
        first["train_far"] = names[t0]
        points[t0] += 60  # a bad level-1 result on a training image: dropped
        first["val_far"] = names[by_split["val"][0]]
        points[by_split["val"][0]] += 60  # the same on val: kept
        first["test_nan"] = names[by_split["test"][0]]
        points[by_split["test"][0]] = np.nan  # diverged net: whole-image fallback
        first["missing"] = names[t1]
        keep = [i for i in range(len(names)) if i != t1]  # no prediction at all
        return [names[i] for i in keep], points[keep]

    pred, ds = _predictions(celeba_root, tmp_path, edit)
    out = tmp_path / "l2"
    assert run(celeba_root, pred, out, "--thresh", "0.05") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["counts"]
    assert c["skipped_by_kind"] == {"level-1 error above threshold": 1, "no level-1 prediction": 1}
    assert c["written"] == {"train": 17, "val": 2, "test": 3}
    assert c["notes"] == {"crop fallback: non-finite prediction": 1}
    dropped = [s for s in manifest["skipped"] if s["kind"].startswith("level-1 error")]
    assert dropped[0]["name"] == first["train_far"]
    predicted = read_predictions(pred).as_dict()
    for split in ("train", "val", "test"):
        rows = [line.split("\t") for line in (out / f"{split}.samples.tsv").read_text().splitlines()[1:]]
        paths = (out / "hdf5" / f"{split}.txt").read_text().split()
        with h5py.File(paths[0], "r") as f:
            data, label = f["data"][...], f["label"][...]
        assert len(rows) == len(label)
        for row, x, y in zip(rows, data, label):
            name, w, h = row[0], int(row[1]), int(row[2])
            gt = as_points(np.array(row[3:13], float))
            box = crop_box(predicted[name], w, h)
            assert [int(v) for v in row[13:17]] == [box.x0, box.y0, box.x1, box.y1]
            np.testing.assert_allclose(y, box.labels(gt).reshape(-1), atol=1e-6)
            assert float(row[17]) == box.angle == 0.0  # the article's rule never turns the crop
            assert row[20] == (box.fallback.replace(" ", "_") or "-")
            # the sample is exactly what the inference path makes of the original image
            np.testing.assert_array_equal(x, read_level2(f"{ds.image_dir}/{name}", box)[0])
        if split == "val":
            assert first["val_far"] in [r[0] for r in rows]
            far = [r for r in rows if r[0] == first["val_far"]][0]
            err = image_errors(predicted[far[0]][None], as_points(np.array(far[3:13], float))[None],
                               [int(far[1])], [int(far[2])])[0]
            assert err > 0.05  # kept although above the threshold
        if split == "test":
            fallback = [r for r in rows if r[0] == first["test_nan"]][0]
            assert fallback[13:17] == ["0", "0", fallback[1], fallback[2]]
    assert (out / "preview.png").is_file()


def test_upright_crops_are_what_the_real_recipe_feeds_level_2(celeba_root, tmp_path):
    """--crop-rule upright: each sample is exactly the turned crop inference cuts (read_level2
    on landmarks.conventions.crop.upright_box), labelled through the same turn; augmented copies turn on
    top of the levelling turn and keep their labels on the features."""
    def roll(ds, names, points):  # level 1 saw the eyes 20 degrees off level
        a = np.deg2rad(20.0)
        r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        centre = points.mean(axis=1, keepdims=True)
        return names, (points - centre) @ r.T + centre

    pred, ds = _predictions(celeba_root, tmp_path, roll)
    out = tmp_path / "up"
    assert run(celeba_root, pred, out, "--thresh", "inf", "--crop-rule", "upright", "--augment", "1",
               "--aug-rotate", "10") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["crop_rule"] == "upright"
    predicted = read_predictions(pred).as_dict()
    rows = [line.split("\t") for line in (out / "train.samples.tsv").read_text().splitlines()[1:]]
    paths = (out / "hdf5" / "train.txt").read_text().split()
    with h5py.File(paths[0], "r") as f:
        data, label = f["data"][...], f["label"][...]
    copies = turned = 0
    for row, x, y in zip(rows, data, label):
        name, w, h = row[0], int(row[1]), int(row[2])
        gt = as_points(np.array(row[3:13], float))
        box = upright_box(predicted[name], w, h)
        assert float(row[17]) == pytest.approx(box.angle, abs=1e-3)
        turned += abs(box.angle) > 5
        if row[18] == "0":
            assert [int(v) for v in row[13:17]] == [box.x0, box.y0, box.x1, box.y1]
            np.testing.assert_allclose(y, box.labels(gt).reshape(-1), atol=1e-5)
            np.testing.assert_array_equal(x, read_level2(f"{ds.image_dir}/{name}", box)[0])
        else:  # the copy's turn is the levelling turn plus at most 10 degrees
            copies += 1
            angle = float(row[19].split("angle=")[1].split(",")[0])
            assert abs(angle - box.angle) <= 10.0 + 1e-6
        # labelled eyes are (nearly) level: the truth was turned 20 degrees from the prediction's eyes
        yy = as_points(y)
        tilt = np.degrees(np.arctan2(abs(yy[1, 1] - yy[0, 1]) * int(h), abs(yy[1, 0] - yy[0, 0]) * int(w)))
        assert tilt < 35
    assert copies > 0 and turned > len(rows) // 2


def test_threshold_inf_keeps_everything_and_bad_predictions_are_refused(celeba_root, tmp_path, capsys):
    def edit(ds, names, points):
        points[0] += 200
        return names, points

    pred, _ = _predictions(celeba_root, tmp_path, edit)
    out = tmp_path / "l2"
    assert run(celeba_root, pred, out, "--thresh", "inf") == 0
    assert json.loads((out / "manifest.json").read_text())["counts"]["written"]["train"] == 19
    bad = tmp_path / "bad.txt"
    bad.write_text("000001.jpg 1 2 3\n")
    assert run(celeba_root, bad, tmp_path / "l2b") == 2
    assert f"{bad}:1: 4 fields" in capsys.readouterr().err
    assert not (tmp_path / "l2b" / "manifest.json").exists()
    assert run(celeba_root, tmp_path / "nope.txt", tmp_path / "l2b") == 2
    assert run(celeba_root, pred, tmp_path / "l2b", "--thresh", "-1") == 2


def test_predictions_file_mode_follows_the_umask(tmp_path):
    import os
    import stat

    from data_prep.predictions import write_predictions

    old = os.umask(0o022)
    try:
        write_predictions(tmp_path / "p.txt", ["a.jpg"], np.zeros((1, 5, 2)))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "p.txt").st_mode) == 0o644
