"""landmarks.conventions.metrics: the three normalisations side by side, on hand-computed cases."""
import json
import math

import numpy as np
import pytest

from landmarks.conventions import metrics

TRUTH = np.array([[[30.0, 40.0], [70.0, 40.0], [50.0, 60.0], [35.0, 80.0], [65.0, 80.0]]])  # eyes 40 px apart


def _moved(dx):
    """TRUTH with every point moved dx pixels to the right (every point's error is dx)."""
    return TRUTH + np.array([dx, 0.0])


def test_each_normaliser_on_a_known_case():
    predicted = _moved(3.0)  # 3 px per point
    m = metrics.summarise(predicted, TRUTH, [60], [80], boxes=[[20, 30, 80, 90]])  # diagonal 100, box 60 wide
    assert m["mean_error"] == pytest.approx(0.03)
    assert m["interocular"]["mean_error"] == pytest.approx(3 / 40)
    assert m["box"]["mean_error"] == pytest.approx(3 / 60)
    assert m["interocular"]["failure_rate_0.10"] == 0 and m["box"]["failure_rate_0.10"] == 0
    assert m["interocular"]["images"] == 1 and m["box"]["images"] == 1


def test_failure_rates_at_ten_percent():
    truth = np.concatenate([TRUTH] * 4)
    predicted = np.concatenate([_moved(dx) for dx in (1.0, 3.9, 4.1, 8.0)])  # IOD 40: 2.5%, 9.75%, 10.25%, 20%
    boxes = [[0, 0, 50, 50]] * 4  # box width 50: 2%, 7.8%, 8.2%, 16%
    m = metrics.summarise(predicted, truth, [60] * 4, [80] * 4, boxes)
    assert m["interocular"]["failure_rate_0.10"] == pytest.approx(0.5)
    assert m["box"]["failure_rate_0.10"] == pytest.approx(0.25)
    assert m["interocular"]["median_error"] == pytest.approx((3.9 + 4.1) / 2 / 40)


def test_coincident_eyes_are_left_out_of_the_interocular_figures_only():
    truth = np.concatenate([TRUTH, TRUTH])
    truth[1, 1] = truth[1, 0]  # both eyes on one pixel
    predicted = truth + np.array([2.0, 0.0])
    m = metrics.summarise(predicted, truth, [60, 60], [80, 80])
    assert m["images"] == 2 and m["interocular"]["images"] == 1 and m["interocular"]["excluded_zero_distance"] == 1
    assert m["interocular"]["mean_error"] == pytest.approx(2 / 40)
    assert m["box"] is None  # no boxes known: no box figure, not a made-up one


def test_box_errors_are_nan_for_an_empty_box():
    errors = metrics.box_errors(_moved(1.0), TRUTH, [[10, 10, 10, 50]])
    assert math.isnan(errors[0])


def test_report_shows_the_three_normalisations_side_by_side(tmp_path):
    from workflow.report import write_report

    truth = np.concatenate([TRUTH] * 2)
    predicted = np.concatenate([_moved(2.0), _moved(6.0)])  # IOD errors 5% and 15%
    with_box = metrics.summarise(predicted, truth, [60, 60], [80, 80], boxes=[[0, 0, 40, 40]] * 2)
    without = metrics.summarise(predicted, truth, [60, 60], [80, 80])
    (tmp_path / "metrics.json").write_text(json.dumps({"test": {"level1": with_box, "level2": without}}))
    text = write_report(tmp_path).read_text()
    header = next(line for line in text.splitlines() if line.startswith("| split"))
    assert "diagonal" in header and "inter-ocular" in header and "box width" in header
    row1 = next(line for line in text.splitlines() if line.startswith("| test | level 1"))
    row2 = next(line for line in text.splitlines() if line.startswith("| test | cascade"))
    # diagonal (100 px) 2% and 6%: 4% mean, 50% over 5%; inter-ocular 10.00% mean, 50% over 10%; box 10.00% mean (2/40, 6/40), 50% over 10%
    cells = row1.split(" | ")
    assert cells[3:7] == ["4.00%", "4.00%", "50.00%", "0.00%"] and float(cells[7]) == pytest.approx(0.6, abs=0.002)
    assert cells[8:] == ["10.00% (0)", "50.00%", "10.00%", "50.00% |"]
    assert row2.split(" | ")[-2:] == ["–", "– |"]  # no boxes known


def test_errors_by_head_turn_bin_the_images_by_their_true_points():
    from landmarks.conventions.metrics import by_turn, head_turn, turn_bin_names

    frontal = np.array([[40.0, 50.0], [60.0, 50.0], [50.0, 60.0], [42.0, 70.0], [58.0, 70.0]])
    turned = frontal + [[0, 0], [0, 0], [7.0, 0], [0, 0], [0, 0]]  # the nose 0.35 IOD off the eye midpoint
    assert head_turn(frontal) == pytest.approx(0.0) and head_turn(turned) == pytest.approx(0.35)
    truth = np.stack([frontal, frontal, turned])
    predicted = truth + [[[1.0, 0]] * 5, [[3.0, 0]] * 5, [[4.0, 0]] * 5]  # 1, 3 and 4 px off: 5%, 15%, 20% IOD
    bins = by_turn(predicted, truth)
    assert [b["bin"] for b in bins] == turn_bin_names() == ["0-0.1", "0.1-0.2", "0.2-0.3", "0.3-0.4", "0.4+"]
    assert [b["images"] for b in bins] == [2, 0, 0, 1, 0]
    assert bins[0]["interocular"] == pytest.approx(0.10) and bins[3]["interocular"] == pytest.approx(0.20)
    assert bins[1]["interocular"] is None
