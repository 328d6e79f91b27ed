"""Owns the error measure (SPEC.md) and the summaries built on it.

Per point: the Euclidean distance between predicted and true point in original-image
pixels, divided by the image diagonal sqrt(w^2 + h^2). An image's error is the mean over its
points; a set's error is the mean over its images. The inter-ocular variant is reported too,
with the images whose two true eyes coincide counted and left out (division by zero).
"""
import numpy as np

from landmarks.labels import LEFT_EYE, RIGHT_EYE

CED_LIMIT = 0.10  # the cumulative error distribution is drawn and integrated up to 10%
FAILURE_THRESHOLDS = (0.05, 0.10)


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


def ced(errors, limit=CED_LIMIT, steps=1001):
    """Cumulative error distribution: thresholds in [0, limit] and the fraction of images at
    or under each; and its area under the curve divided by `limit` (1.0 = every error 0)."""
    errors = np.sort(np.asarray(errors, dtype=np.float64))
    thresholds = np.linspace(0.0, limit, steps)
    fractions = np.searchsorted(errors, thresholds, side="right") / max(len(errors), 1)
    auc = float(np.trapezoid(fractions, thresholds) / limit)
    return thresholds, fractions, auc


def summarise(predicted, truth, widths, heights):
    """Every figure the reports show, as plain Python numbers (JSON-ready)."""
    per_point = point_errors(predicted, truth, widths, heights)
    per_image = per_point.mean(axis=-1)
    iod = interocular_errors(predicted, truth)
    valid = np.isfinite(iod)
    _, _, auc = ced(per_image)
    return {
        "images": int(len(per_image)),
        "mean_error": float(per_image.mean()) if len(per_image) else float("nan"),
        "median_error": float(np.median(per_image)) if len(per_image) else float("nan"),
        "per_point": [float(v) for v in per_point.mean(axis=0)] if len(per_image) else [],
        "failure_rate": {f"{t:.2f}": float((per_image > t).mean()) for t in FAILURE_THRESHOLDS},
        "ced_auc_0.10": auc,
        "interocular": {
            "mean_error": float(iod[valid].mean()) if valid.any() else float("nan"),
            "images": int(valid.sum()),
            "excluded_zero_distance": int((~valid).sum()),
        },
    }
