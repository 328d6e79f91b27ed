"""Owns the level-2 crop rule (SPEC.md), shared by data prep, evaluation and the demo.

Centre: level 1's predicted nose (original-image pixels); d = its distance to the predicted
left eye; box [nose_x - 2d, nose_x + 2d] x [nose_y - 2d, nose_y + 2d], rounded, clipped to
the image. The box is half-open: columns x0..x1-1 and rows y0..y1-1.

Degenerate boxes fall back to the whole image (and say why), so that every image gets a
level-2 prediction: the predicted nose outside the image, a non-finite prediction, or a box
smaller than MIN_CROP pixels on a side after clipping.
"""
from dataclasses import dataclass

import numpy as np

from landmarks.labels import LEFT_EYE, NOSE, denormalise, normalise

HALF_SIZE_IN_D = 2.0  # the box spans 2d on each side of the nose
MIN_CROP = 8  # pixels; below this a crop carries too little to resize to 48x48 sensibly


@dataclass(frozen=True)
class CropBox:
    x0: int
    y0: int
    x1: int
    y1: int
    fallback: str = ""  # why the whole image was used instead, empty when the rule applied

    @property
    def width(self):
        return self.x1 - self.x0

    @property
    def height(self):
        return self.y1 - self.y0

    def to_crop(self, points):
        """Original-image pixel points (..., k, 2) -> pixel points inside the crop."""
        return np.asarray(points, dtype=np.float64) - np.array([self.x0, self.y0], dtype=np.float64)

    def from_crop(self, points):
        """Pixel points inside the crop -> original-image pixel points."""
        return np.asarray(points, dtype=np.float64) + np.array([self.x0, self.y0], dtype=np.float64)

    def labels(self, points):
        """Ground-truth original-image points -> level-2 labels (normalised in the crop)."""
        return normalise(self.to_crop(points), self.width, self.height)

    def unlabel(self, normalised):
        """Level-2 network output (normalised in the crop) -> original-image pixel points."""
        return self.from_crop(denormalise(normalised, self.width, self.height))

    def cut(self, image):
        """The crop of an H x W (x C) image array."""
        return image[self.y0:self.y1, self.x0:self.x1]


def crop_box(predicted, width, height):
    """The crop for one image from level 1's predicted pixel points (shape (5, 2))."""
    predicted = np.asarray(predicted, dtype=np.float64)
    whole = dict(x0=0, y0=0, x1=int(width), y1=int(height))
    if not np.all(np.isfinite(predicted)):
        return CropBox(**whole, fallback="non-finite prediction")
    nose_x, nose_y = predicted[NOSE]
    if not (0 <= nose_x <= width - 1 and 0 <= nose_y <= height - 1):
        return CropBox(**whole, fallback="predicted nose outside the image")
    half = HALF_SIZE_IN_D * float(np.hypot(*(predicted[LEFT_EYE] - predicted[NOSE])))
    x0 = max(0, int(round(nose_x - half)))
    y0 = max(0, int(round(nose_y - half)))
    x1 = min(int(width), int(round(nose_x + half)))
    y1 = min(int(height), int(round(nose_y + half)))
    if x1 - x0 < MIN_CROP or y1 - y0 < MIN_CROP:
        return CropBox(**whole, fallback=f"crop under {MIN_CROP} px")
    return CropBox(x0, y0, x1, y1)
