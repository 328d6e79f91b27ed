"""Owns the error measures and the summaries built on them: the article's, and the two the
literature reports, side by side.

- Diagonal (SPEC.md, the article's): per point, the Euclidean distance between predicted and
  true point in original-image pixels divided by the image diagonal sqrt(w^2 + h^2). An
  image's error is the mean over its points; a set's error is the mean over its images.
- Inter-ocular (MTFL/AFLW, TCDCN): the mean point distance over the distance between the two
  true eye centres (points 0 and 1), with the failure rate at 10%; images whose two true
  eyes coincide are counted and left out (division by zero).
- Face box (Sun et al., deep-landmark): the mean point distance over the face box's width,
  when the dataset gives boxes (Sun et al.'s lists), with the failure rate at 10%.
- Head turn (`head_turn`, the yaw read off the true points) and the inter-ocular error per turn
  bin (`by_turn`): whether a model's error grows as heads turn away.
"""
import numpy as np

from landmarks.conventions.labels import LEFT_EYE, RIGHT_EYE

CED_LIMIT = 0.10  # the cumulative error distribution is drawn and integrated up to 10%
FAILURE_THRESHOLDS = (0.05, 0.10)
NORMALISED_FAILURE = 0.10  # the inter-ocular and box failure threshold of MTFL, AFLW and Sun et al.


def point_errors(predicted, truth, widths, heights):
    """(N, k, 2) predicted and true pixel points -> (N, k) errors as fractions of the diagonal."""
    predicted = np.asarray(predicted, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted {predicted.shape} and true {truth.shape} points differ in shape")
    diagonal = np.hypot(np.asarray(widths, dtype=np.float64), np.asarray(heights, dtype=np.float64))
    return np.linalg.norm(predicted - truth, axis=-1) / diagonal[..., None]


def image_errors(predicted, truth, widths, heights):
    """(N,) per-image errors: the mean over each image's points."""
    return point_errors(predicted, truth, widths, heights).mean(axis=-1)


def interocular_errors(predicted, truth):
    """(N,) per-image errors normalised by the true inter-ocular distance; NaN where the two
    true eyes coincide."""
    predicted = np.asarray(predicted, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    iod = np.linalg.norm(truth[:, LEFT_EYE] - truth[:, RIGHT_EYE], axis=-1)
    dist = np.linalg.norm(predicted - truth, axis=-1).mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(iod > 0, dist / np.where(iod > 0, iod, 1.0), np.nan)


TURN_BINS = (0.0, 0.1, 0.2, 0.3, 0.4)  # head_turn bin edges; the last bin is open (near profile)


def head_turn(points):
    """How far the head is turned left or right, from its five points alone: the nose tip's
    distance from the eye midpoint along the eye line, in inter-ocular distances (0 frontal,
    0.4 and more near profile; in MTFL half the faces are above 0.1 and a tenth above 0.3).
    0 where both eyes are on one pixel."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    eyes = p[RIGHT_EYE] - p[LEFT_EYE]
    iod2 = float(eyes @ eyes)
    if iod2 < 1e-12:
        return 0.0
    return abs(float((p[2] - (p[LEFT_EYE] + p[RIGHT_EYE]) / 2) @ eyes)) / iod2


def turn_bin_names():
    edges = list(TURN_BINS)
    return [f"{a:g}-{b:g}" for a, b in zip(edges, edges[1:])] + [f"{edges[-1]:g}+"]


def by_turn(predicted, truth):
    """[{"bin", "images", "interocular"}] per TURN_BINS bin of the true points' head turn: the
    mean inter-ocular error of the images in it (None for an empty bin)."""
    truth = np.asarray(truth, dtype=np.float64)
    turns = np.array([head_turn(t) for t in truth])
    errors = interocular_errors(predicted, truth)
    which = np.digitize(turns, TURN_BINS[1:])
    out = []
    for k, name in enumerate(turn_bin_names()):
        chosen = errors[(which == k) & np.isfinite(errors)]
        out.append({"bin": name, "images": int(len(chosen)), "interocular": float(chosen.mean()) if len(chosen) else None})
    return out


def box_errors(predicted, truth, boxes):
    """(N,) per-image mean point distances over the face box's width; boxes (N, 4) as
    (left, top, right, bottom) in original pixels."""
    predicted = np.asarray(predicted, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    width = boxes[:, 2] - boxes[:, 0]
    dist = np.linalg.norm(predicted - truth, axis=-1).mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(width > 0, dist / np.where(width > 0, width, 1.0), np.nan)


def _normalised_summary(errors):
    """Mean, median and failure rate at NORMALISED_FAILURE of errors with NaNs left out."""
    valid = np.isfinite(errors)
    kept = errors[valid]
    return {
        "mean_error": float(kept.mean()) if len(kept) else float("nan"),
        "median_error": float(np.median(kept)) if len(kept) else float("nan"),
        "failure_rate_0.10": float((kept > NORMALISED_FAILURE).mean()) if len(kept) else float("nan"),
        "images": int(valid.sum()),
    }


def ced(errors, limit=CED_LIMIT, steps=1001):
    """Cumulative error distribution: thresholds in [0, limit] and the fraction of images at
    or under each; and its area under the curve divided by `limit` (1.0 = every error 0)."""
    errors = np.sort(np.asarray(errors, dtype=np.float64))
    thresholds = np.linspace(0.0, limit, steps)
    fractions = np.searchsorted(errors, thresholds, side="right") / max(len(errors), 1)
    auc = float(np.trapezoid(fractions, thresholds) / limit)
    return thresholds, fractions, auc


def summarise(predicted, truth, widths, heights, boxes=None):
    """Every figure the reports show, as plain Python numbers (JSON-ready). `boxes` (N, 4)
    (left, top, right, bottom) when the dataset gives face boxes; "box" is None without."""
    per_point = point_errors(predicted, truth, widths, heights)
    per_image = per_point.mean(axis=-1)
    iod = interocular_errors(predicted, truth)
    _, _, auc = ced(per_image)
    return {
        "images": int(len(per_image)),
        "mean_error": float(per_image.mean()) if len(per_image) else float("nan"),
        "median_error": float(np.median(per_image)) if len(per_image) else float("nan"),
        "per_point": [float(v) for v in per_point.mean(axis=0)] if len(per_image) else [],
        "failure_rate": {f"{t:.2f}": float((per_image > t).mean()) for t in FAILURE_THRESHOLDS},
        "ced_auc_0.10": auc,
        "interocular": dict(_normalised_summary(iod), excluded_zero_distance=int((~np.isfinite(iod)).sum())),
        "box": _normalised_summary(box_errors(predicted, truth, boxes)) if boxes is not None else None,
    }
