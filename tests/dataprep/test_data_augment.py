"""data_prep.augment through the real worker: labels land on the drawn features after every
transform, mirrors swap left and right, copies are reproducible; and augmentation end to end."""
import json

import cv2
import numpy as np
import pytest

from data_prep import augment, build, level1, synthetic
from data_prep.preview import patch_points
from landmarks.conventions.crop import crop_box
from landmarks.conventions.labels import FLIP_ORDER
from support import POINT_COLOURS, colour_blobs

POINTS = np.array([(150, 130), (330, 125), (245, 215), (175, 320), (320, 330)], dtype=float)
SIZE = 96  # larger than 48 so that the centroids are measured precisely


@pytest.fixture(scope="module")
def dot_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("dots") / "dots.png"  # PNG: no JPEG ringing between colours
    img = np.full((430, 470, 3), 0, np.uint8)
    for (x, y), colour in zip(POINTS, POINT_COLOURS):
        cv2.circle(img, (int(x * 16), int(y * 16)), 12 * 16, tuple(int(c) for c in colour), -1,
                   lineType=cv2.LINE_AA, shift=4)
    cv2.imwrite(str(path), img)
    return path




def _check_copy(task, settings, tolerance=0.35):
    sample = build.make_sample(task, settings)
    assert isinstance(sample, build.Sample), sample
    where = patch_points(sample.label, *sample.frame, SIZE)
    blobs = colour_blobs(sample.pixels)
    assert len(blobs) == 5
    # label i sits on the disc drawn for point i, or for its mirror partner after a flip
    order = FLIP_ORDER if task.jitter is not None and task.jitter.flip else range(5)
    for i, drawn in enumerate(order):
        assert np.abs(where[i] - blobs[drawn]).max() < tolerance, (task.jitter, i)
    return sample


@pytest.mark.parametrize("level", [1, 2])
def test_labels_land_on_the_drawn_features(dot_image, level):
    config = augment.AugmentConfig(copies=12, flip=0.5, rotate=25, scale=0.15, shift=0.06)
    # level 2 crops around a (slightly wrong) level-1 prediction
    prediction = POINTS + [4, -3] if level == 2 else None
    settings = build.Settings(level=level, size=SIZE)
    base = build.Task("train", 7, "dots.png", str(dot_image), POINTS, 1, "test", prediction=prediction)
    _check_copy(base, settings)
    flips = 0
    for k in range(1, config.copies + 1):
        jitter = augment.draw(config, seed=3, index=7, copy=k)
        flips += jitter.flip
        task = build.Task("train", 7, "dots.png", str(dot_image), POINTS, 1, "test", prediction, k, jitter)
        _check_copy(task, settings)
    assert 0 < flips < config.copies  # both kinds were exercised


def test_flip_alone_is_the_mirror_image(dot_image):
    settings = build.Settings(level=1, size=SIZE)
    plain = build.make_sample(build.Task("train", 0, "d", str(dot_image), POINTS, 1, "t"), settings)
    mirrored = build.make_sample(build.Task("train", 0, "d", str(dot_image), POINTS, 1, "t", None, 1,
                                            augment.Jitter(flip=True)), settings)
    np.testing.assert_array_equal(mirrored.pixels, plain.pixels[:, ::-1])
    lab, mir = plain.label.reshape(5, 2), mirrored.label.reshape(5, 2)
    # normalised x changes sign; left eye <-> right eye, mouth left <-> mouth right
    np.testing.assert_allclose(mir, lab[list(FLIP_ORDER)] * [-1, 1], atol=1e-6)


def test_draws_are_reproducible_and_bounded():
    config = augment.AugmentConfig(copies=3, rotate=10, scale=0.1, shift=0.05)
    a = [augment.draw(config, 1, i, k) for i in range(20) for k in (1, 2, 3)]
    assert a == [augment.draw(config, 1, i, k) for i in range(20) for k in (1, 2, 3)]
    assert a != [augment.draw(config, 2, i, k) for i in range(20) for k in (1, 2, 3)]
    assert all(abs(j.angle) <= 10 and 0.9 <= j.scale <= 1.1 and abs(j.dx) <= 0.05 for j in a)
    with pytest.raises(ValueError):
        augment.AugmentConfig(copies=-1)


def test_augment_adds_training_copies_only(tmp_path):
    root = tmp_path / "celeba"
    synthetic.generate(root, 12, seed=2, workers=1, progress=False)
    out = tmp_path / "l1"
    assert level1.main(["--dataset", str(root), "--out", str(out), "--quiet", "--augment", "2", "--workers", "1"]) == 0
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["written"] == {"train": 30, "val": 1, "test": 1}  # 10 train images x (1 + 2)
    rows = [line.split("\t") for line in (out / "train.samples.tsv").read_text().splitlines()[1:]]
    assert sorted(int(r[13]) for r in rows) == [0] * 10 + [1] * 10 + [2] * 10
    assert all(r[14].startswith("flip=") for r in rows if r[13] != "0")


def test_new_options_off_leave_the_old_draws_unchanged():
    """Data sets built before zoom/rotate-any/grey/colour/blur existed must come out the same."""
    old = augment.AugmentConfig(copies=2, flip=0.5, rotate=25, scale=0.15, shift=0.06)
    for i in range(10):
        j = augment.draw(old, 4, i, 1)
        rng = np.random.default_rng([4, i, 1])
        u = rng.uniform(-1.0, 1.0, size=4)
        assert (j.angle, j.scale, j.dx, j.dy) == (u[0] * 25, 1 + u[1] * 0.15, u[2] * 0.06, u[3] * 0.06)
        assert not j.photometric and "grey" not in j.describe()


def test_zoom_and_any_angle_reach_beyond_the_plain_ranges():
    config = augment.AugmentConfig(copies=1, rotate=10, scale=0.1, zoom=3.0, rotate_any=0.5)
    draws = [augment.draw(config, 1, i, 1) for i in range(400)]
    assert max(j.scale for j in draws) > 2.0 and min(j.scale for j in draws) < 1.0
    assert 0.3 < np.mean([j.scale > 1.1 for j in draws]) < 0.7  # about half the copies zoom out
    assert max(abs(j.angle) for j in draws) > 120
    with pytest.raises(ValueError, match="zoom"):
        augment.AugmentConfig(zoom=0.5)
    with pytest.raises(ValueError, match="grey"):
        augment.AugmentConfig(grey=1.5)


def test_roam_moves_small_faces_off_centre_and_keeps_the_picture_in_the_frame():
    """Off, the zoom's draws are unchanged (old data sets stay the same); on, a zoomed-out
    copy's picture moves across the margin the zoom opened, never beyond it."""
    centred = augment.AugmentConfig(copies=1, shift=0.05, zoom=4.0)
    roaming = augment.AugmentConfig(copies=1, shift=0.05, zoom=4.0, roam=1.0)
    plain = [augment.draw(centred, 3, i, 1) for i in range(400)]
    moved = [augment.draw(roaming, 3, i, 1) for i in range(400)]
    assert [j.scale for j in plain] == [j.scale for j in moved]
    assert all(abs(j.dx) <= 0.05 for j in plain)
    for p, m in zip(plain, moved):
        if m.scale <= 1.0:
            assert (m.dx, m.dy) == (p.dx, p.dy)  # not zoomed out: no roaming
        limit = 0.05 + max(0.0, m.scale - 1) / 2  # the picture's edge may reach the frame's, not cross it
        assert abs(m.dx) <= limit + 1e-12 and abs(m.dy) <= limit + 1e-12
    far = [max(abs(j.dx), abs(j.dy)) for j in moved if j.scale > 3.0]
    assert far and max(far) > 0.5  # a small face reaches well off the middle
    with pytest.raises(ValueError, match="roam"):
        augment.AugmentConfig(roam=1.5)


def test_photometric_changes_pixels_not_labels(dot_image):
    settings = build.Settings(level=1, size=SIZE)
    plain = build.make_sample(build.Task("train", 0, "d", str(dot_image), POINTS, 1, "t"), settings)
    jitter = augment.Jitter(grey=True, contrast=0.8, brightness=10.0, blur=0.8)
    changed = build.make_sample(build.Task("train", 0, "d", str(dot_image), POINTS, 1, "t", None, 1, jitter), settings)
    np.testing.assert_array_equal(changed.label, plain.label)
    assert np.all(changed.pixels[..., 0] == changed.pixels[..., 1])  # grey: equal channels
    assert np.all(changed.pixels[..., 1] == changed.pixels[..., 2])
    expected = np.clip(np.rint((cv2.cvtColor(plain.pixels, cv2.COLOR_BGR2GRAY).astype(np.float32) - 127.5) * 0.8
                               + 127.5 + 10), 0, 255)
    # blur moves values around, never the mean much: the grey/contrast/brightness part is exact
    assert abs(changed.pixels[..., 0].mean() - expected.mean()) < 1.0
    assert "grey=1" in jitter.describe()


def test_an_edge_copy_fills_its_margin_from_the_picture_not_black(tmp_path):
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), np.full((200, 200, 3), 150, np.uint8))
    settings = build.Settings(level=1, size=SIZE)
    points = np.array([[80.0, 90.0], [120.0, 90.0], [100.0, 110.0], [85.0, 130.0], [115.0, 130.0]])
    samples = {}
    for edge in (False, True):
        jitter = augment.Jitter(scale=2.5, dx=0.3, angle=20.0, edge=edge)
        samples[edge] = build.make_sample(build.Task("train", 0, "g", str(path), points, 1, "t", None, 1, jitter), settings)
    np.testing.assert_array_equal(samples[True].label, samples[False].label)
    assert (samples[False].pixels < 20).mean() > 0.3  # zoomed out, shifted and turned: much black margin
    assert samples[True].pixels.min() >= 145  # the same margin, now the picture's grey
    assert "edge=1" in augment.Jitter(edge=True).describe() and "edge" not in augment.Jitter().describe()
    draws = [augment.draw(augment.AugmentConfig(copies=1, edge=0.5), 2, i, 1).edge for i in range(200)]
    assert 0.35 < np.mean(draws) < 0.65


def test_level2_truth_crops_ignore_a_wrong_prediction(dot_image):
    """--train-crops truth: a training crop is cut around the true points (and never dropped by
    the level-1 threshold); val and test crops stay around the prediction."""
    wrong = POINTS + [60, 40]  # level 1 far off: error above any threshold
    truth_settings = build.Settings(level=2, size=SIZE, thresh=0.01, train_crops="truth")
    sample = _check_copy(build.Task("train", 0, "d", str(dot_image), POINTS, 1, "t", prediction=wrong), truth_settings)
    expected = crop_box(POINTS, 470, 430)
    assert tuple(int(v) for v in sample.row[13:17]) == (expected.x0, expected.y0, expected.x1, expected.y1)
    dropped = build.make_sample(build.Task("train", 0, "d", str(dot_image), POINTS, 1, "t", prediction=wrong),
                                build.Settings(level=2, size=SIZE, thresh=0.01))
    assert isinstance(dropped, build.Problem) and "threshold" in dropped.kind
    val = build.make_sample(build.Task("val", 0, "d", str(dot_image), POINTS, 1, "t", prediction=wrong), truth_settings)
    around = crop_box(wrong, 470, 430)
    assert tuple(int(v) for v in val.row[13:17]) == (around.x0, around.y0, around.x1, around.y1)


def test_turn_measures_the_nose_offset_whatever_the_roll_scale_and_mirror():
    frontal = np.array([(0, 0), (10, 0), (5, 6), (1, 12), (9, 12)], dtype=float)
    turned = frontal.copy()
    turned[2, 0] += 3  # nose 0.3 inter-ocular distances towards one eye
    assert augment.turn(frontal) == pytest.approx(0.0)
    assert augment.turn(turned) == pytest.approx(0.3)
    angle = np.radians(70)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    assert augment.turn(2.5 * turned @ rotation.T + 40) == pytest.approx(0.3)
    mirrored = (turned * [-1, 1])[list(FLIP_ORDER)]
    assert augment.turn(mirrored) == pytest.approx(0.3)
    assert augment.turn(np.zeros((5, 2))) == 0.0  # both eyes on one pixel


def test_turned_faces_get_more_copies_and_frontal_ones_do_not():
    face = np.array([(0, 0), (10, 0), (5, 6), (1, 12), (9, 12)], dtype=float)
    with_turn = lambda t: face + [[0, 0], [0, 0], [10 * t, 0], [0, 0], [0, 0]]  # noqa: E731
    plain = augment.AugmentConfig(copies=10)
    weighted = augment.AugmentConfig(copies=10, turned=1.0)
    assert [augment.copies_for(plain, with_turn(t)) for t in (0, 0.2, 0.8)] == [10, 10, 10]
    assert [augment.copies_for(weighted, with_turn(t)) for t in (0, 0.2, augment.TURN_FULL, 0.8)] == [10, 15, 20, 20]
    assert augment.copies_for(augment.AugmentConfig(copies=0, turned=1.0), with_turn(0.8)) == 0
    with pytest.raises(ValueError, match="turned"):
        augment.AugmentConfig(copies=1, turned=-1)


def test_turned_copies_reach_the_data_folder(tmp_path):
    root = tmp_path / "celeba"
    synthetic.generate(root, 40, seed=2, workers=1, progress=False)
    data = build.load_dataset(level1.parse_args(["--dataset", str(root), "--out", "x"]))
    expected = sum(augment.copies_for(augment.AugmentConfig(copies=2, turned=2.0), e.points)
                   for e in data.entries if e.split == "train")
    out = tmp_path / "l1"
    assert level1.main(["--dataset", str(root), "--out", str(out), "--quiet", "--augment", "2", "--aug-turned", "2",
                        "--workers", "1"]) == 0
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["augmented_copies"]["train"] == expected > 2 * 32  # some synthetic heads are turned
    assert json.loads((out / "manifest.json").read_text())["options"]["augment"]["turned"] == 2.0


def test_tight_copies_cut_around_the_face_and_labels_still_land(dot_image):
    """A tight level-1 copy is cut from the face's box (crop.box_from_points), from 0.6 of it (the
    face overflows the frame) to 1.6: its labels stay on the drawn features wherever they fall
    inside the frame, and overflow it on the tightest copies."""
    from landmarks.conventions.crop import box_from_points

    plain = augment.AugmentConfig(copies=1, rotate=10, scale=0.1, shift=0.05, zoom=2.0)
    tight = augment.AugmentConfig(copies=1, rotate=10, scale=0.1, shift=0.05, zoom=2.0, tight=0.5)
    draws = [augment.draw(tight, 2, i, 1) for i in range(400)]
    assert [augment.draw(plain, 2, i, 1).flip for i in range(400)] == [j.flip for j in draws]
    cut = [j for j in draws if j.tight]
    assert 0.4 < len(cut) / len(draws) < 0.6
    assert min(j.scale for j in cut) >= augment.TIGHT_SIDE[0] and max(j.scale for j in cut) <= augment.TIGHT_SIDE[1]
    assert min(j.scale for j in cut) < 0.7 and "tight=1" in cut[0].describe()
    settings = build.Settings(level=1, size=SIZE)
    side = box_from_points(POINTS)[2] - box_from_points(POINTS)[0]
    overflowed = 0
    for k, jitter in enumerate(cut[:12], 1):
        jitter = augment.Jitter(flip=jitter.flip, angle=0.0, scale=max(jitter.scale, 1.0), dx=jitter.dx,
                                dy=jitter.dy, tight=True)  # the whole face in the frame: every disc measurable
        task = build.Task("train", 7, "dots.png", str(dot_image), POINTS, 1, "test", None, k, jitter)
        sample = _check_copy(task, settings)
        assert sample.frame[0] == pytest.approx(side * jitter.scale, abs=2)  # the face's box, not the image
    for jitter in cut:
        if jitter.scale < 0.75:
            task = build.Task("train", 7, "dots.png", str(dot_image), POINTS, 1, "test", None, 1, jitter)
            sample = build.make_sample(task, settings)
            overflowed += bool((np.abs(sample.label.reshape(5, 2)) > 1).any())
    assert overflowed  # the tightest copies cut a point off
    with pytest.raises(ValueError, match="tight"):
        augment.AugmentConfig(tight=1.5)
