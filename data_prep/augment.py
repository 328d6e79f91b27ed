"""Owns training-set augmentation: which transformed copies are made, and their exact labels.

Off by default (`copies=0`), so that the default run reproduces the article. A copy jitters
the box the sample is cut from (the whole image for level 1, the crop for level 2): its
scale and shift; then rotates the content about the box centre and maybe mirrors it. The
points go through the very same transform, and a mirror also swaps left and right points
(labels.FLIP_ORDER), so that index 0 stays the subject's left eye.

Each copy's random draw is seeded by (seed, entry index, copy number): the data set does not
depend on worker count or processing order.
"""
from dataclasses import dataclass

import cv2
import numpy as np

from landmarks.labels import FLIP_ORDER


@dataclass(frozen=True)
class AugmentConfig:
    copies: int = 0  # transformed copies per training image; 0: no augmentation
    flip: float = 0.5  # probability of a horizontal mirror (CelebA faces are near-symmetric)
    rotate: float = 15.0  # max |angle| in degrees; CelebA has few rolled faces (weakness 5)
    scale: float = 0.1  # the box is scaled by a factor in [1 - scale, 1 + scale]
    shift: float = 0.05  # the box moves by up to this fraction of its size, each axis

    def __post_init__(self):
        if self.copies < 0:
            raise ValueError(f"augment copies must be >= 0, got {self.copies}")
        if not 0 <= self.flip <= 1:
            raise ValueError(f"flip probability must be in [0, 1], got {self.flip}")
        if not (0 <= self.scale < 1 and self.rotate >= 0 and self.shift >= 0):
            raise ValueError("augment rotate, scale and shift must be >= 0 (scale < 1)")


@dataclass(frozen=True)
class Jitter:
    flip: bool = False
    angle: float = 0.0  # degrees, positive = counter-clockwise on screen
    scale: float = 1.0  # box size factor (> 1 shows more around the face)
    dx: float = 0.0  # box shift as a fraction of its width
    dy: float = 0.0

    def describe(self):
        return f"flip={int(self.flip)},angle={self.angle:.2f},scale={self.scale:.3f},dx={self.dx:.3f},dy={self.dy:.3f}"


def draw(config, seed, index, copy):
    """The jitter of copy number `copy` (>= 1) of entry `index`."""
    rng = np.random.default_rng([seed, index, copy])
    u = rng.uniform(-1.0, 1.0, size=4)
    return Jitter(flip=bool(rng.random() < config.flip), angle=float(u[0] * config.rotate),
                  scale=float(1.0 + u[1] * config.scale), dx=float(u[2] * config.shift),
                  dy=float(u[3] * config.shift))


def apply(box, jitter):
    """(jittered box (x0, y0, x1, y1) in original pixels, integers, may reach outside the
    image; 2x3 transform acting in that box's pixel-centre frame)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + jitter.dx * w, (y0 + y1) / 2 + jitter.dy * h
    nw, nh = max(2, int(round(w * jitter.scale))), max(2, int(round(h * jitter.scale)))
    nx0, ny0 = int(round(cx - nw / 2)), int(round(cy - nh / 2))
    centre = ((nw - 1) / 2.0, (nh - 1) / 2.0)
    rotation = np.vstack([cv2.getRotationMatrix2D(centre, jitter.angle, 1.0), [0, 0, 1]])
    mirror = np.array([[-1, 0, nw - 1], [0, 1, 0], [0, 0, 1]], dtype=np.float64) if jitter.flip else np.eye(3)
    return (nx0, ny0, nx0 + nw, ny0 + nh), (mirror @ rotation)[:2]


def frame_points(points, box, transform=None, flip=False):
    """Original-image pixel points (k, 2) -> pixel points in the (transformed) box frame;
    with `flip`, reordered so that left and right points keep their meaning."""
    q = np.asarray(points, dtype=np.float64) - np.array([box[0], box[1]], dtype=np.float64)
    if transform is not None:
        q = q @ np.asarray(transform)[:, :2].T + np.asarray(transform)[:, 2]
    if flip:
        q = q[list(FLIP_ORDER)]
    return q
