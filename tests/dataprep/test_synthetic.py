"""Tests for data_prep.synthetic: the CelebA layout, determinism, labels on the drawn
features, and CelebA-like variety, on real files written to a temporary folder."""
import json
import math
import subprocess
import sys

import cv2
import numpy as np
import pytest

from data_prep import face_model, synthetic
from data_prep.face_model import FaceParams, face_points, render_face
from data_prep.synthetic import generate, render_sample
from landmarks.conventions.labels import NUM_POINTS, as_points

COUNT = 200  # one whole block of the merged-eyes period, four of the noisy one
SEED = 3
HEADER = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
          "leftmouth_x leftmouth_y rightmouth_x rightmouth_y")


def read_landmarks(root):
    lines = (root / "Anno" / "list_landmarks_celeba.txt").read_text().splitlines()
    names = [line.split()[0] for line in lines[2:]]
    values = np.array([[int(v) for v in line.split()[1:]] for line in lines[2:]])
    return lines, names, as_points(values).astype(np.int64)


def read_partition(root):
    return [line.split() for line in (root / "Eval" / "list_eval_partition.txt").read_text().splitlines()]


def gray(path):
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float64)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn") / "celeba"
    summary = generate(root, COUNT, SEED, workers=2, progress=False)
    return root, summary


@pytest.fixture(scope="module")
def labels(dataset):
    return read_landmarks(dataset[0])


def test_layout_and_header_lines(dataset, labels):
    root, summary = dataset
    lines, names, points = labels
    assert lines[0] == str(COUNT)
    assert lines[1] == HEADER
    expected = [f"{i:06d}.jpg" for i in range(1, COUNT + 1)]
    assert names == expected
    assert sorted(p.name for p in (root / "Img" / "img_celeba").iterdir()) == expected
    assert points.shape == (COUNT, NUM_POINTS, 2)
    assert all(len(line.split()) == 11 for line in lines[2:])
    assert summary["count"] == COUNT and not summary["skipped"]
    assert not root.with_name(root.name + ".partial").exists()
    # Every label lies in its image, and every image is a real JPEG of CelebA-like size.
    for name, pts in zip(names[:40], points[:40]):
        h, w = cv2.imread(str(root / "Img" / "img_celeba" / name)).shape[:2]
        assert 150 <= w <= 1000 and 150 <= h <= 1000
        assert (pts >= 0).all() and (pts[:, 0] <= w - 1).all() and (pts[:, 1] <= h - 1).all()


def test_partition_covers_all_images_in_80_10_10(dataset, labels):
    rows = read_partition(dataset[0])
    assert [r[0] for r in rows] == labels[1]
    splits = [int(r[1]) for r in rows]
    assert set(splits) == {0, 1, 2}
    assert (splits.count(0), splits.count(1), splits.count(2)) == (160, 20, 20)
    assert splits == sorted(splits)  # contiguous, like CelebA's own split
    assert dataset[1]["partition"] == {"train": 160, "val": 20, "test": 20}


def test_same_seed_same_bytes_whatever_the_workers(dataset, tmp_path):
    root = dataset[0]
    again = tmp_path / "again"
    generate(again, COUNT, SEED, workers=1, progress=False)
    for rel in ("Anno/list_landmarks_celeba.txt", "Eval/list_eval_partition.txt"):
        assert (again / rel).read_bytes() == (root / rel).read_bytes()
    for path in sorted((root / "Img" / "img_celeba").iterdir()):
        assert (again / "Img" / "img_celeba" / path.name).read_bytes() == path.read_bytes(), path.name


def test_image_depends_on_seed_and_index_only(dataset, labels, tmp_path):
    root = dataset[0]
    prefix, other = tmp_path / "prefix", tmp_path / "other"
    generate(prefix, 20, SEED, workers=1, progress=False)
    generate(other, 20, SEED + 1, workers=1, progress=False)
    assert np.array_equal(read_landmarks(prefix)[2], labels[2][:20])
    assert (prefix / "Img/img_celeba/000020.jpg").read_bytes() == (root / "Img/img_celeba/000020.jpg").read_bytes()
    assert not np.array_equal(read_landmarks(other)[2], labels[2][:20])
    differing = [name for name in labels[1][:20]
                 if (other / "Img/img_celeba" / name).read_bytes() != (root / "Img/img_celeba" / name).read_bytes()]
    assert len(differing) == 20


POSES = [  # (roll, yaw, pitch)
    (0, 0, 0), (25, 0, 0), (-30, 0, 0), (0, 30, 0), (0, -30, 0), (0, 0, 20), (15, -25, -15), (-20, 20, 10)]


@pytest.mark.parametrize("roll, yaw, pitch", POSES)
def test_dark_marks_are_centred_on_the_points(roll, yaw, pitch):
    a = 90.0
    params = FaceParams(center=(200.0, 210.0), half_width=a, roll=roll, yaw=yaw, pitch=pitch, glasses=True)
    image, points = render_face(params, 400, 430, background=(200, 200, 200))
    assert np.allclose(points, face_points(params))
    g = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float64)
    ys, xs = np.mgrid[:g.shape[0], :g.shape[1]]
    for k, (x, y) in enumerate(points):
        # The darkest pixels near a point form the mark; their centroid is the point itself.
        window = (xs - x) ** 2 + (ys - y) ** 2 <= (0.09 * a) ** 2
        dark = window & (g <= g[window].min() + 8)
        centroid = np.array([xs[dark].mean(), ys[dark].mean()])
        assert np.linalg.norm(centroid - (x, y)) < 0.5, (k, centroid, (x, y))
        ring = (np.hypot(xs - x, ys - y) - 0.28 * a) ** 2 < 1
        assert g[int(round(y)), int(round(x))] < np.median(g[ring]) - 60, k


@pytest.mark.parametrize("roll", [-30, 0, 20])
def test_head_outline_turns_with_roll(roll):
    skin = (150, 170, 210)
    params = FaceParams(center=(200.0, 200.0), half_width=80.0, roll=roll, skin=skin, hair=skin, long_hair=False)
    image, _ = render_face(params, 400, 400, background=(0, 0, 0))
    moments = cv2.moments((image.max(axis=2) > 0).astype(np.uint8), binaryImage=True)
    long_axis = 0.5 * math.degrees(math.atan2(2 * moments["mu11"], moments["mu20"] - moments["mu02"]))
    assert (long_axis - (90 + roll) + 90) % 180 - 90 == pytest.approx(0, abs=2)


def test_pose_moves_the_points_like_a_head():
    base = dict(center=(300.0, 300.0), half_width=100.0)
    frontal = face_points(FaceParams(**base))
    le, re, nose, ml, mr = frontal
    assert le[0] < re[0] and ml[0] < mr[0]  # CelebA: "left" is on the image's left
    assert le[1] == re[1] < nose[1] < ml[1] == mr[1]
    assert nose[0] == pytest.approx(300.0)
    for roll in (-25.0, 12.0, 30.0):
        le, re = face_points(FaceParams(**base, roll=roll))[:2]
        assert math.degrees(math.atan2(re[1] - le[1], re[0] - le[0])) == pytest.approx(roll)
    le, re, nose = face_points(FaceParams(**base, yaw=30))[:3]
    assert nose[0] > (le[0] + re[0]) / 2  # turned toward the image's right
    assert np.linalg.norm(nose - le) > 1.3 * np.linalg.norm(nose - re)
    assert re[0] - le[0] < frontal[1, 0] - frontal[0, 0]
    lifted = face_points(FaceParams(**base, pitch=20))
    assert lifted[2, 1] - lifted[0, 1] < frontal[2, 1] - frontal[0, 1]


def test_written_labels_are_the_rounded_drawn_points(dataset, labels):
    _, summary = dataset
    _, names, points = labels
    for index in (0, 1, 17, 99, 150):
        sample = render_sample(SEED, index)
        assert np.allclose(sample.points, face_points(sample.params))
        if names[index] not in summary["merged_eyes"]:
            assert np.array_equal(points[index], np.rint(sample.points))


def test_dataset_labels_sit_on_dark_features(dataset, labels):
    root, summary = dataset
    _, names, points = labels
    skip = set(summary["noisy"]) | set(summary["merged_eyes"])
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    hits = total = 0
    for name, pts in zip(names, points):
        if name in skip:
            continue
        g = gray(root / "Img" / "img_celeba" / name)
        h, w = g.shape
        radius = 0.3 * np.linalg.norm((pts[0] + pts[1]) / 2 - (pts[3] + pts[4]) / 2)
        for x, y in pts:
            centre = g[max(0, y - 1):y + 2, max(0, x - 1):x + 2].mean()
            rx = np.clip(np.rint(x + radius * np.cos(angles)).astype(int), 0, w - 1)
            ry = np.clip(np.rint(y + radius * np.sin(angles)).astype(int), 0, h - 1)
            hits += centre < np.median(g[ry, rx]) - 10
            total += 1
    assert total >= 5 * (COUNT - len(skip))
    assert hits / total > 0.97


def test_merged_eye_annotations(dataset, labels):
    _, summary = dataset
    _, names, points = labels
    same = [n for n, p in zip(names, points) if (p[0] == p[1]).all()]
    assert len(same) == 1 and same == summary["merged_eyes"]
    # The image itself is drawn correctly: its true eyes are apart.
    index = names.index(same[0])
    sample = render_sample(SEED, index)
    assert sample.merged_eyes and np.linalg.norm(sample.points[0] - sample.points[1]) > 5


def test_noisy_images_have_large_black_areas(dataset, labels):
    root, summary = dataset
    assert len(summary["noisy"]) == COUNT // synthetic.NOISY_PERIOD
    clean = [n for n in labels[1][:30] if n not in summary["noisy"]]
    for name in summary["noisy"]:
        image = cv2.imread(str(root / "Img" / "img_celeba" / name))
        assert (image.max(axis=2) < 12).mean() > 0.2, name
        # Some point keeps its face around it: the band never covers all five.
        pts = labels[2][labels[1].index(name)]
        r = max(3, int(0.3 * np.linalg.norm(pts[0] - pts[3])))
        g = gray(root / "Img" / "img_celeba" / name)
        assert max(np.median(g[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1]) for x, y in pts) > 20
    black = [(cv2.imread(str(root / "Img" / "img_celeba" / n)).max(axis=2) < 12).mean() for n in clean]
    assert np.median(black) < 0.05


def test_variety_like_celeba(dataset, labels):
    root, _ = dataset
    _, names, points = labels
    sizes = np.array([cv2.imread(str(root / "Img" / "img_celeba" / n), cv2.IMREAD_REDUCED_GRAYSCALE_8).shape
                      for n in names]) * 8  # 1/8 decode: size only
    heights, widths = sizes[:, 0], sizes[:, 1]
    assert widths.min() < 260 and widths.max() > 750
    aspect = heights / widths
    assert aspect.min() < 0.8 and aspect.max() > 1.3
    diagonal = np.hypot(widths, heights)
    face = np.linalg.norm((points[:, 0] + points[:, 1]) / 2 - (points[:, 3] + points[:, 4]) / 2, axis=1)
    relative = face / diagonal
    assert relative.max() / relative.min() > 4
    nose_x = points[:, 2, 0] / widths
    assert nose_x.min() < 0.3 and nose_x.max() > 0.7
    roll = np.degrees(np.arctan2(points[:, 1, 1] - points[:, 0, 1], points[:, 1, 0] - points[:, 0, 0]))
    assert (roll > 12).sum() >= 5 and (roll < -12).sum() >= 5 and (np.abs(roll) < 8).mean() > 0.4
    eye_to_nose = np.linalg.norm(points[:, 2] - points[:, 0], axis=1) / np.linalg.norm(points[:, 2] - points[:, 1], axis=1)
    assert eye_to_nose.min() < 0.75 and eye_to_nose.max() > 1.33  # yawed both ways


def test_face_region_covers_5_to_80_percent():
    fractions, inside = [], []
    for index in range(80):
        sample = render_sample(SEED, index)
        h, w = sample.image.shape[:2]
        x0, y0, x1, y1 = face_model.face_box(sample.params)
        fractions.append((x1 - x0) * (y1 - y0) / (w * h))
        inside.append(x0 >= -1 and y0 >= -1 and x1 <= w and y1 <= h)
    assert min(fractions) < 0.08 and max(fractions) > 0.5 and max(fractions) <= 0.81
    assert np.mean(inside) > 0.8


def test_rerun_skips_force_regenerates_and_failures_leave_no_dataset(tmp_path, monkeypatch):
    out = tmp_path / "small"
    generate(out, 6, 1, workers=1, progress=False)
    stamp = json.loads((out / "synthetic.json").read_text())
    assert stamp["args"]["count"] == 6 and stamp["args"]["seed"] == 1
    before = (out / "Img/img_celeba/000001.jpg").stat().st_mtime_ns
    assert generate(out, 6, 1, workers=1, progress=False)["skipped"]
    assert (out / "Img/img_celeba/000001.jpg").stat().st_mtime_ns == before
    assert not generate(out, 6, 1, workers=1, progress=False, force=True)["skipped"]
    assert len(read_landmarks(out)[1]) == 6
    # A different count replaces the old dataset; an interrupted run leaves the old one whole.
    generate(out, 4, 1, workers=1, progress=False)
    assert len(list((out / "Img/img_celeba").iterdir())) == 4

    def broken(job):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "_render_range", broken)
    with pytest.raises(KeyboardInterrupt):
        generate(out, 9, 1, workers=1, progress=False)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "fresh", 9, 1, workers=1, progress=False)
    assert len(read_landmarks(out)[1]) == 4
    assert not (tmp_path / "fresh").exists()


def test_refuses_to_replace_a_folder_that_is_not_synthetic(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate(out, 3, 0, workers=1, progress=False)
    assert (out / "notes.txt").read_text() == "keep me"


def test_cli(tmp_path):
    run = lambda *args: subprocess.run([sys.executable, "-m", "data_prep.synthetic", *args],  # noqa: E731
                                       capture_output=True, text=True, check=True).stdout
    assert "--count" in run("--help") and "--force" in run("--help")
    out = tmp_path / "cli"
    assert "3 images" in run("--out", str(out), "--count", "3", "--seed", "7", "--quiet")
    assert read_landmarks(out)[0][0] == "3"
    assert "up to date" in run("--out", str(out), "--count", "3", "--seed", "7")


def test_worker_pool_survives_opencv_threads_in_the_caller(tmp_path):
    # A worker forked while the caller's OpenCV threads are busy can deadlock (about half the
    # time, without the guard), so try several rounds, in a subprocess that a timeout can end.
    code = ("import sys, cv2, numpy as np; from data_prep.synthetic import generate\n"
            "cv2.setNumThreads(2)\n"
            "big = np.random.default_rng(0).integers(0, 255, (3000, 3000, 3), dtype=np.uint8)\n"
            "for _ in range(10):\n"
            "    cv2.GaussianBlur(big, (0, 0), 3); cv2.resize(big, (1000, 1000))\n"
            "    generate(sys.argv[1], 40, 0, workers=2, progress=False, force=True)\n"
            "print(cv2.getNumThreads())")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d")], capture_output=True, text=True,
                          timeout=30, check=True)
    assert done.stdout.strip() == "2"  # and the caller's setting is restored
    assert len(read_landmarks(tmp_path / "d")[1]) == 40
