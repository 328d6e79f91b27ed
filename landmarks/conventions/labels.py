"""Owns the point order and the label normalisation of the released models.

A label row is `x1 y1 x2 y2 ... x5 y5` in CelebA's order (left eye, right eye, nose, left
mouth corner, right mouth corner). Pixel coordinates are normalised with the width and
height of the image they refer to (the whole image for level 1, the crop for level 2):
    x' = (x - (w-1)/2) / ((w-1)/2),   y' = (y - (h-1)/2) / ((h-1)/2)
so the image's first pixel centre maps to -1 and its last to +1.
"""
import numpy as np

POINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
NUM_POINTS = len(POINT_NAMES)
# Index of each point's mirror image under a horizontal flip (left <-> right).
FLIP_ORDER = (1, 0, 2, 4, 3)
LEFT_EYE, RIGHT_EYE, NOSE = 0, 1, 2


def as_points(rows):
    """Rows of `x1 y1 ... xk yk` (shape (..., 2k)) as points of shape (..., k, 2), float64."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.shape[-1] % 2:
        raise ValueError(f"a label row needs an even number of values, got {rows.shape[-1]}")
    return rows.reshape(rows.shape[:-1] + (rows.shape[-1] // 2, 2))


def as_rows(points):
    """Points of shape (..., k, 2) as rows `x1 y1 ... xk yk` of shape (..., 2k)."""
    points = np.asarray(points)
    return points.reshape(points.shape[:-2] + (points.shape[-2] * 2,))


def _half_extent(width, height):
    width = np.asarray(width, dtype=np.float64)
    height = np.asarray(height, dtype=np.float64)
    if np.any(width < 2) or np.any(height < 2):
        raise ValueError("label normalisation needs an image at least 2 pixels wide and high")
    # shape (..., 1, 2) so that it broadcasts over the points of each row
    return np.stack([(width - 1) / 2.0, (height - 1) / 2.0], axis=-1)[..., None, :]


def normalise(points, width, height):
    """Pixel points (..., k, 2) -> normalised points, for images of the given size(s)."""
    half = _half_extent(width, height)
    return (np.asarray(points, dtype=np.float64) - half) / half


def denormalise(points, width, height):
    """Normalised points (..., k, 2) -> pixel points, for images of the given size(s)."""
    half = _half_extent(width, height)
    return np.asarray(points, dtype=np.float64) * half + half


def flip_points(points, width):
    """Pixel points of an image mirrored left-right: x -> w-1-x, and the left/right points
    swap places so that index 0 is still the subject's left eye."""
    points = np.array(points, dtype=np.float64)
    points[..., 0] = (width - 1) - points[..., 0]
    return points[..., list(FLIP_ORDER), :]


def flip_normalised(points):
    """Normalised points predicted on a mirrored input, as points of the input itself: x -> -x
    (the normalisation is symmetric about the centre) and left/right swap back."""
    points = np.array(points, dtype=np.float64)
    points[..., 0] = -points[..., 0]
    return points[..., list(FLIP_ORDER), :]
