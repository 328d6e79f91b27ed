"""Owns training-set augmentation: which transformed copies are made, and their exact labels.

Off by default (`copies=0`), so that the default run reproduces the article. A copy jitters
the box the sample is cut from (the whole image for level 1, the crop for level 2): its
scale and shift, or a zoom-out that makes the face small in the picture; then rotates the
content about the box centre (now and then by any angle, upside down included) and maybe
mirrors it; what the box shows beyond the picture is black, or (`edge`) the picture's edge
repeated, as a photo has no frame line. The points go through the very same transform, and a
mirror also swaps left and right points (labels.FLIP_ORDER), so that index 0 stays the
subject's left eye. Photometric changes (grey, contrast and brightness, blur) act on the
finished pixels and move no point.

A `tight` copy of a level-1 image is cut around the face instead (the box a face detector
would draw around the true points, tighter or looser, moved): the face fills or overflows the
frame as in detector crops and tightly cropped photos.

Each copy's random draw is seeded by (seed, entry index, copy number): the data set does not
depend on worker count or processing order.
"""
from dataclasses import dataclass

import cv2
import numpy as np

from landmarks.conventions.labels import FLIP_ORDER
from landmarks.conventions.metrics import head_turn


@dataclass(frozen=True)
class AugmentConfig:
    copies: int = 0  # transformed copies per training image; 0: no augmentation
    flip: float = 0.5  # probability of a horizontal mirror (CelebA faces are near-symmetric)
    rotate: float = 15.0  # max |angle| in degrees; CelebA has few rolled faces (weakness 5)
    scale: float = 0.1  # the box is scaled by a factor in [1 - scale, 1 + scale]
    shift: float = 0.05  # the box moves by up to this fraction of its size, each axis
    # The options below are off by default; each draws only when on, so data sets built
    # before they existed come out the same.
    zoom: float = 1.0  # half the copies: the box grows by up to this factor (a small face)
    roam: float = 0.0  # a zoomed-out face also wanders over up to this fraction of the margin (0: near the centre)
    edge: float = 0.0  # probability that a copy's margin repeats the picture's edge instead of black
    rotate_any: float = 0.0  # probability that the angle is drawn from the whole circle
    grey: float = 0.0  # probability of a grey copy (grey photos exist in the wild)
    colour: float = 0.0  # contrast and brightness change by up to this fraction
    blur: float = 0.0  # probability of a Gaussian blur (sigma up to BLUR_SIGMA output pixels)
    # Extra copies of a turned head: up to this many times `copies`, in proportion to its turn
    # (turn(), in full from TURN_FULL). Photo sets are mostly frontal; the faces users meet are not.
    turned: float = 0.0
    # Probability that a level-1 copy is cut around the face instead of the whole image: the box a
    # detector of MTCNN's tightness would draw (landmarks.conventions.crop.box_from_points), from
    # TIGHT_SIDE[0] of it (the face overflows the frame by a fifth of the box on each side) to
    # TIGHT_SIDE[1] (looser), moved by up to TIGHT_SHIFT of its side: face-detector crops of any
    # tightness, and faces that fill or overflow the frame.
    tight: float = 0.0

    def __post_init__(self):
        if self.copies < 0:
            raise ValueError(f"augment copies must be >= 0, got {self.copies}")
        if not 0 <= self.flip <= 1:
            raise ValueError(f"flip probability must be in [0, 1], got {self.flip}")
        if not (0 <= self.scale < 1 and self.rotate >= 0 and self.shift >= 0):
            raise ValueError("augment rotate, scale and shift must be >= 0 (scale < 1)")
        if not self.zoom >= 1:
            raise ValueError(f"augment zoom must be >= 1 (1: off), got {self.zoom}")
        if not 0 <= self.roam <= 1:
            raise ValueError(f"augment roam must be in [0, 1] (0: off), got {self.roam}")
        for name in ("rotate_any", "grey", "blur", "edge", "tight"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"augment {name.replace('_', '-')} probability must be in [0, 1], got {getattr(self, name)}")
        if not self.turned >= 0:
            raise ValueError(f"augment turned must be >= 0 (0: off), got {self.turned}")
        if not 0 <= self.colour < 1:
            raise ValueError(f"augment colour must be in [0, 1), got {self.colour}")


BLUR_SIGMA = 1.2  # output pixels: at 48x48 this turns a sharp face into a soft web thumbnail
TURN_FULL = 0.4  # turn() from which a face gets all its `turned` extra copies (near profile)
TIGHT_SIDE = (0.6, 1.6)  # a tight copy's box side, in true face boxes (log-uniform between)
TIGHT_SHIFT = 0.1  # a tight copy's box moves by up to this fraction of its side, each axis


turn = head_turn  # how far a head is turned (landmarks.conventions.metrics owns the measure)


def copies_for(config, points):
    """The number of transformed copies of a training face with these (true) points."""
    if not config.turned or not config.copies:
        return config.copies
    return config.copies + int(round(config.turned * config.copies * min(1.0, turn(points) / TURN_FULL)))


@dataclass(frozen=True)
class Jitter:
    flip: bool = False
    angle: float = 0.0  # degrees, positive = counter-clockwise on screen
    scale: float = 1.0  # box size factor (> 1 shows more around the face)
    dx: float = 0.0  # box shift as a fraction of its width
    dy: float = 0.0
    grey: bool = False
    contrast: float = 1.0  # pixel values scale about mid-grey by this factor...
    brightness: float = 0.0  # ...then move by this many grey levels
    blur: float = 0.0  # Gaussian sigma in output pixels, 0: none
    edge: bool = False  # the margin outside the picture repeats its edge (else black)
    tight: bool = False  # level 1: the box is the face's (crop.box_from_points), not the whole image

    def describe(self):
        text = f"flip={int(self.flip)},angle={self.angle:.2f},scale={self.scale:.3f},dx={self.dx:.3f},dy={self.dy:.3f}"
        if self.photometric:
            text += f",grey={int(self.grey)},contrast={self.contrast:.3f},brightness={self.brightness:.1f},blur={self.blur:.2f}"
        return text + (",edge=1" if self.edge else "") + (",tight=1" if self.tight else "")

    @property
    def photometric(self):
        return self.grey or self.contrast != 1.0 or self.brightness != 0.0 or self.blur > 0


def draw(config, seed, index, copy):
    """The jitter of copy number `copy` (>= 1) of entry `index`."""
    rng = np.random.default_rng([seed, index, copy])
    u = rng.uniform(-1.0, 1.0, size=4)
    flip = bool(rng.random() < config.flip)
    angle, scale = float(u[0] * config.rotate), float(1.0 + u[1] * config.scale)
    extra = {}
    zoomed = config.zoom > 1 and rng.random() < 0.5
    if zoomed:
        scale *= float(np.exp(rng.uniform(0.0, np.log(config.zoom))))  # log-uniform: as many mid as far
    if config.rotate_any and rng.random() < config.rotate_any:
        angle = float(rng.uniform(-180.0, 180.0))
    if config.grey:
        extra["grey"] = bool(rng.random() < config.grey)
    if config.colour:
        c = rng.uniform(-1.0, 1.0, size=2)
        extra["contrast"] = float(1.0 + c[0] * config.colour)
        extra["brightness"] = float(c[1] * config.colour * 127.5)
    if config.blur and rng.random() < config.blur:
        extra["blur"] = float(rng.uniform(0.3, 1.0) * BLUR_SIGMA)
    dx, dy = float(u[2] * config.shift), float(u[3] * config.shift)
    if config.roam and zoomed and scale > 1:
        # the zoom opened a margin of (scale - 1) / 2 box widths on each side: the picture
        # moves across `roam` of it, so a small face is not always in the middle
        r = rng.uniform(-1.0, 1.0, size=2) * config.roam * (scale - 1) / 2
        dx, dy = dx + float(r[0]), dy + float(r[1])
    if config.edge:
        extra["edge"] = bool(rng.random() < config.edge)
    if config.tight and rng.random() < config.tight:  # drawn last: sets built without it come out the same
        extra["tight"] = True
        low, high = np.log(TIGHT_SIDE[0]), np.log(TIGHT_SIDE[1])
        scale = float(np.exp(rng.uniform(low, high)))
        dx, dy = (float(v) for v in rng.uniform(-TIGHT_SHIFT, TIGHT_SHIFT, size=2))
    return Jitter(flip=flip, angle=angle, scale=scale, dx=dx, dy=dy, **extra)


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


def photometric(pixels, jitter):
    """The copy's grey, contrast, brightness and blur applied to finished H x W x 3 uint8 pixels."""
    if jitter is None or not jitter.photometric:
        return pixels
    out = pixels.astype(np.float32)
    if jitter.grey:
        out = np.repeat(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)[..., None], 3, axis=2)
    out = (out - 127.5) * jitter.contrast + 127.5 + jitter.brightness
    if jitter.blur > 0:
        out = cv2.GaussianBlur(out, (0, 0), jitter.blur)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
