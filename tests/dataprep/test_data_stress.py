"""data_prep.stress: every stressed image's labels land on the features they name (rotation,
zoom and mirror included), the copy is a data set cascade_eval reads, and bad input exits 2."""
import dataclasses
import json

import cv2
import numpy as np
import pytest

from data_prep import augment, readers, stress
from landmarks.conventions.labels import FLIP_ORDER
from support import POINT_COLOURS, colour_blobs

SIZE = 96
FACE = np.array([[36.0, 38.0], [60.0, 38.0], [48.0, 52.0], [38.0, 66.0], [58.0, 66.0]])


def _root(tmp_path, count=12):
    lines = []
    for i in range(count):
        points = FACE + [(i % 3 - 1) * 3, (i % 2) * 3]
        img = np.zeros((SIZE, SIZE, 3), np.uint8)
        for (x, y), colour in zip(points, POINT_COLOURS):
            cv2.circle(img, (int(x * 16), int(y * 16)), 4 * 16, tuple(int(c) for c in colour), -1, cv2.LINE_AA, 4)
        name = f"faces/f{i:02d}.png"  # PNG: no JPEG ringing between colours
        (tmp_path / "faces").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / name), img)
        lines.append(name + " " + " ".join(f"{v:g}" for v in points[:, 0]) + " " + " ".join(f"{v:g}" for v in points[:, 1]))
    (tmp_path / "training.txt").write_text("\n".join(lines) + "\n")
    return tmp_path




def test_labels_follow_every_transform(tmp_path):
    data = readers.load(str(_root(tmp_path / "src", count=15)), seed=1)
    config = augment.AugmentConfig(copies=1, flip=0.5, rotate=60.0, zoom=1.8)  # colour kept: blobs by colour
    out = tmp_path / "stress"
    # PNG sources and JPEG output: the blobs survive quality 90 well enough at this size
    count = stress.write_stress_copy(data, "train", str(out), seed=5, config=config, progress=False)
    assert count == len(data.split("train")) == 12
    record = json.loads((out / "stress.json").read_text())
    lines = (out / "list_landmarks_celeba.txt").read_text().split("\n")[1:-1]
    angles, flips = [], 0
    for line, item in zip(lines, record["images"]):
        fields = line.split()
        points = np.array(fields[1:], float).reshape(5, 2)
        image = cv2.imread(str(out / "img_celeba" / fields[0]))
        assert image.shape == (SIZE, SIZE, 3)
        flip = "flip=1" in item["jitter"]
        flips += flip
        angles.append(abs(float(item["jitter"].split("angle=")[1].split(",")[0])))
        blobs = colour_blobs(image, threshold=60, min_pixels=8, weighted=False)
        for i, drawn in enumerate(FLIP_ORDER if flip else range(5)):
            assert np.abs(points[i] - blobs[drawn]).max() < 1.0, (item, i)
    assert 0 < flips < 12 and max(angles) > 20


def test_the_copy_is_a_data_set_and_bad_input_is_refused(tmp_path, capsys):
    root = _root(tmp_path / "src", count=20)
    out = tmp_path / "stress"
    assert stress.main(["--dataset", str(root), "--split", "val", "--out", str(out), "--quiet"]) == 0
    copy = readers.load(str(out))
    assert copy.format == "celeba" and len(copy.split("test")) == 2  # 10% of 20, every one scored as test
    assert stress.main(["--dataset", str(tmp_path / "missing"), "--out", str(out), "--quiet"]) == 2
    assert "missing" in capsys.readouterr().err


def test_the_photo_copy_sets_each_face_small_and_anywhere_with_its_labels(tmp_path, capsys):
    data = readers.load(str(_root(tmp_path / "src", count=15)), seed=1)
    out = tmp_path / "photo"
    count = stress.write_stress_copy(data, "train", str(out), seed=5, progress=False, photo=0.5, upscale=2)
    assert count == 12
    record = json.loads((out / "stress.json").read_text())
    assert (record["photo"], record["upscale"]) == (0.5, 2) and "config" not in record
    lines = (out / "list_landmarks_celeba.txt").read_text().split("\n")[1:-1]
    centres = []
    for line, item in zip(lines, record["images"]):
        fields = line.split()
        points = np.array(fields[1:], float).reshape(5, 2)
        image = cv2.imread(str(out / "img_celeba" / fields[0]))
        assert image.shape == (4 * SIZE, 4 * SIZE, 3)  # enlarged twice, then half the photo's side
        blobs = colour_blobs(image, threshold=60, min_pixels=8, weighted=False)
        assert np.abs(points - np.stack([blobs[i] for i in range(5)])).max() < 1.0, item  # no mirror: blob i is point i
        centres.append(points.mean(axis=0) / image.shape[0])
    centres = np.array(centres)
    assert np.ptp(centres[:, 0]) > 0.2 and np.ptp(centres[:, 1]) > 0.2  # placed all over, not centred
    with pytest.raises(SystemExit) as refused:
        stress.main(["--dataset", str(tmp_path / "src"), "--out", str(out), "--photo", "1.5", "--quiet"])
    assert refused.value.code == 2 and "--photo must be a fraction" in capsys.readouterr().err


def test_edge_stress_turns_the_same_way_without_black_corners(tmp_path):
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), np.full((SIZE, SIZE, 3), 120, np.uint8))
    turned = augment.Jitter(angle=45.0, scale=1.3)
    black, points = stress.stress_image(str(path), FACE, turned)
    edged, same = stress.stress_image(str(path), FACE, augment.Jitter(angle=45.0, scale=1.3, edge=True))
    np.testing.assert_array_equal(points, same)
    assert (black < 10).all(axis=2).mean() > 0.2 and edged.min() >= 115
    draws = dataclasses.replace(stress.STRESS, edge=1.0)
    assert all(augment.draw(draws, 1001, i, 1).edge for i in range(20))


def test_the_tight_copy_cuts_inside_the_face_box_with_its_labels(tmp_path, capsys):
    from landmarks.conventions.crop import box_from_points

    data = readers.load(str(_root(tmp_path / "src", count=15)), seed=1)
    out = tmp_path / "tight"
    assert stress.write_stress_copy(data, "train", str(out), seed=5, progress=False, tight=0.8) == 12
    record = json.loads((out / "stress.json").read_text())
    assert record["tight"] == 0.8 and "config" not in record
    lines = (out / "list_landmarks_celeba.txt").read_text().split("\n")[1:-1]
    for line, item in zip(lines, record["images"]):
        fields = line.split()
        points = np.array(fields[1:], float).reshape(5, 2)
        image = cv2.imread(str(out / "img_celeba" / fields[0]))
        box = box_from_points(points)
        assert image.shape[0] == image.shape[1] == pytest.approx(0.8 * (box[2] - box[0]), abs=1)
        assert max(abs(v) for v in item["shift"]) <= stress.TIGHT_SHIFT
        blobs = colour_blobs(image, threshold=60, min_pixels=4, weighted=False)
        seen = [i for i in range(5) if i in blobs and 2 < points[i, 0] < image.shape[1] - 3 and 2 < points[i, 1] < image.shape[0] - 3]
        assert seen
        for i in seen:  # a disc cut by the frame moves its centroid: only the ones well inside
            if 6 < points[i, 0] < image.shape[1] - 7 and 6 < points[i, 1] < image.shape[0] - 7:
                assert np.abs(points[i] - blobs[i]).max() < 1.5, (item, i)
    with pytest.raises(SystemExit) as refused:
        stress.main(["--dataset", str(tmp_path / "src"), "--out", str(out), "--tight", "0.8", "--photo", "0.5"])
    assert refused.value.code == 2 and "choose one" in capsys.readouterr().err


def test_a_split_with_no_readable_image_writes_nothing_and_exits_2(tmp_path, capsys):
    root = _root(tmp_path / "src", count=20)
    for path in (root / "faces").iterdir():
        path.write_bytes(b"not an image")
    out = tmp_path / "stress"
    assert stress.main(["--dataset", str(root), "--split", "val", "--out", str(out), "--quiet"]) == 2
    assert "none of the 2 val images could be read" in capsys.readouterr().err
    assert not (out / "list_landmarks_celeba.txt").exists()
