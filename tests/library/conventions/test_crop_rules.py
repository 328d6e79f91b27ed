"""landmarks.conventions.crop's rules beyond the article's: the upright level-2 crop and the face box of
level 1's second look, the turned-box geometry they share with landmarks.conventions.images, and the
mirrored-answer mapping of landmarks.conventions.labels."""
import argparse
import json

import numpy as np
import pytest

from landmarks.conventions import crop, images
from landmarks.conventions.labels import FLIP_ORDER, flip_normalised, flip_points, normalise
from landmarks.runtime.inference import RECIPES, Recipe, recipe_named
from workflow import runs

# An upright face (eyes level, nose below their midpoint, mouth corners below), in a 200x160 image.
UPRIGHT = np.array([[80.0, 70.0], [120.0, 70.0], [100.0, 92.0], [84.0, 112.0], [116.0, 112.0]])


def rolled(points, degrees, centre=(100.0, 90.0)):
    """`points` turned by `degrees` (clockwise on screen for positive, y down) about `centre`."""
    a = np.deg2rad(degrees)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (points - centre) @ r.T + centre


@pytest.mark.parametrize("degrees", [0.0, 30.0, -75.0, 180.0])
def test_upright_box_levels_the_eyes_whatever_the_roll(degrees):
    face = rolled(UPRIGHT, degrees)
    box = crop.upright_box(face, 200, 160)
    assert not box.fallback
    inside = box.to_crop(face)
    # levelled: both eyes on one row, left eye on the left, nose and mouth below the eyes
    assert inside[0, 1] == pytest.approx(inside[1, 1], abs=1e-9)
    assert inside[0, 0] < inside[1, 0] and inside[2, 1] > inside[0, 1] and inside[3, 1] > inside[2, 1]
    # the article's square: 2d on each side of the nose, so the nose sits at the centre (to
    # the article's rounding: x0 = round(nose - side/2), up to a pixel off after the turn)
    d = np.hypot(*(face[0] - face[2]))
    assert box.width == box.height == int(round(4 * d))
    np.testing.assert_allclose(inside[2], [(box.width - 1) / 2, (box.height - 1) / 2], atol=1.25)
    # labels and back are exact
    np.testing.assert_allclose(box.unlabel(box.labels(face)), face, atol=1e-9)


def test_upright_box_is_not_clipped_and_falls_back_like_the_article():
    near_edge = UPRIGHT - [75.0, 0.0]  # left eye at x=5: the square reaches past the image
    box = crop.upright_box(near_edge, 200, 160)
    assert box.x0 < 0 and box.width == box.height  # not clipped: the face keeps its scale
    article = crop.crop_box(near_edge, 200, 160)
    assert article.x0 == 0 and article.width < article.height  # the article's rule clips and stretches
    assert crop.upright_box(UPRIGHT * np.nan, 200, 160).fallback == "non-finite prediction"
    assert crop.upright_box(UPRIGHT + [500, 0], 200, 160).fallback == "predicted nose outside the image"
    assert crop.level2_box("article", UPRIGHT, 200, 160) == crop.crop_box(UPRIGHT, 200, 160)
    with pytest.raises(ValueError, match="unknown crop rule"):
        crop.level2_box("diagonal", UPRIGHT, 200, 160)


def _dots(points, width=200, height=160):
    """A black image with a 3x3 white dot at each (rounded) point."""
    image = np.zeros((height, width, 3), np.uint8)
    for x, y in np.rint(points).astype(int):
        image[y - 1:y + 2, x - 1:x + 2] = 255
    return image


@pytest.mark.parametrize("degrees", [25.0, -60.0])
def test_turned_box_pixels_show_the_points_where_its_labels_say(degrees):
    face = np.rint(rolled(UPRIGHT, degrees))
    box = crop.upright_box(face, 200, 160)
    size = 96
    patch = images.level2_pixels(_dots(face), box, size)[..., 0].astype(float)
    expected = images.frame_to_output(box.to_crop(face), box.width, box.height, size)
    for x, y in expected:  # the brightest spot near each expected place is within a pixel of it
        x0, y0 = int(round(x)) - 4, int(round(y)) - 4
        window = patch[y0:y0 + 9, x0:x0 + 9]
        wy, wx = np.unravel_index(np.argmax(window), window.shape)
        assert abs(x0 + wx - x) <= 1.5 and abs(y0 + wy - y) <= 1.5
    # and a levelled face: the two eye dots on one row of the patch
    assert abs(expected[0, 1] - expected[1, 1]) < 1e-6


def test_face_box_frames_the_whole_face_upright():
    face = rolled(UPRIGHT, 40.0)
    box = crop.face_box(face, 200, 160)
    inside = box.to_crop(face)
    assert inside[0, 1] == pytest.approx(inside[1, 1], abs=1e-9)
    assert np.all(inside > 0) and np.all(inside < box.width - 1)  # every point well inside
    size = np.hypot(40.0, 42.0)  # inter-ocular 40, eyes to mouth 42
    assert box.width == pytest.approx(crop.FACE_BOX_SIDE * size, abs=1)
    np.testing.assert_allclose(inside.mean(axis=0), [(box.width - 1) / 2] * 2, atol=1.25)
    assert crop.face_box(face + 1000, 200, 160).fallback == "predicted face outside the image"


def test_cut_refuses_a_turned_box():
    with pytest.raises(ValueError, match="plain crop"):
        crop.upright_box(rolled(UPRIGHT, 30.0), 200, 160).cut(np.zeros((160, 200, 3)))


def test_flip_normalised_matches_flipping_pixels():
    width, height = 200, 160
    points = rolled(UPRIGHT, 10.0)
    mirrored_pixels = flip_points(points, width)  # what a net sees on the mirrored image
    back = flip_normalised(normalise(mirrored_pixels, width, height))
    np.testing.assert_allclose(back, normalise(points, width, height), atol=1e-12)
    assert list(FLIP_ORDER) == [1, 0, 2, 4, 3]


def test_recipes_and_which_one_the_tools_pick(tmp_path, monkeypatch):
    assert recipe_named("article") == Recipe()
    real = recipe_named("real")
    assert real.mirror and real.refine and real.crop == "upright"
    assert set(RECIPES) == set(runs.RECIPE_NAMES)
    with pytest.raises(ValueError, match="unknown cascade recipe"):
        recipe_named("fast")
    with pytest.raises(ValueError, match="unknown crop rule"):
        Recipe("x", crop="round")
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "settings.json").write_text(json.dumps({"schedule": "real"}))
    ns = lambda **kw: argparse.Namespace(**{"run": None, "l1": None, "recipe": "auto", **kw})  # noqa: E731
    assert runs.recipe_name(ns(run=str(run))) == "real"
    (run / "settings.json").write_text(json.dumps({"schedule": "demo"}))
    assert runs.recipe_name(ns(run=str(run))) == "article"
    assert runs.recipe_name(ns(l1=["a", "b"])) == "article"
    assert runs.recipe_name(ns(l1=["a", "b"], recipe="real")) == "real"
    shipped = tmp_path / "models"
    shipped.mkdir()
    monkeypatch.setenv(runs.SHIPPED_MODELS_ENV, str(shipped))
    assert runs.recipe_name(ns()) == "article"  # no shipped.json: the article's
    (shipped / "shipped.json").write_text(json.dumps({"settings": {"schedule": "real"}}))
    assert runs.recipe_name(ns()) == "real"
    (shipped / "shipped.json").write_text(json.dumps({"recipe": "article", "settings": {"schedule": "real"}}))
    assert runs.recipe_name(ns()) == "article"  # said outright wins


def test_a_turned_box_is_drawn_turned():
    from landmarks.conventions.draw import draw_box

    face = rolled(UPRIGHT, 30.0)
    box = crop.upright_box(face, 200, 160)
    drawn = draw_box(np.zeros((160, 200, 3), np.uint8), box)[..., 2]
    corners = box.from_crop(np.array([[0.0, 0.0], [box.width - 1, 0.0]]))
    for x, y in np.rint(corners).astype(int):  # the turned corners are on the outline
        if 0 <= x < 200 and 0 <= y < 160:
            assert drawn[max(0, y - 1):y + 2, max(0, x - 1):x + 2].max() > 0
    plain = crop.crop_box(face, 200, 160)
    assert draw_box(np.zeros((160, 200, 3), np.uint8), plain)[plain.y0, plain.x0 + 3, 2] > 0


def test_box_from_points_is_start_box_run_backwards():
    from landmarks.conventions.crop import FACE_BOX_SIDE, box_from_points, face_box, face_size, start_box

    points = np.array([[120.0, 140.0], [180.0, 138.0], [150.0, 175.0], [128.0, 205.0], [175.0, 203.0]])
    box = box_from_points(points)
    side = face_size(points) / 0.66
    assert box[2] - box[0] == pytest.approx(side) and box[3] - box[1] == pytest.approx(side)
    start, upright = start_box(box, 1000, 1000), face_box(points, 1000, 1000)
    # the region the box calls for is the one the points call for (same centre and side, to rounding)
    assert abs(start.width - FACE_BOX_SIDE * face_size(points)) <= 1
    assert abs((start.x0 + start.x1) / 2 - (upright.x0 + upright.x1) / 2) <= 1
    assert abs((start.y0 + start.y1) / 2 - (upright.y0 + upright.y1) / 2) <= 1
    assert (start.x0 + start.x1 - 1) / 2 == pytest.approx(points[:, 0].mean(), abs=1)
