"""Owns the level-2 crop rules, shared by data prep, evaluation and the demo, the face
box of the level-1 second look (landmarks.runtime.inference's `refine`), and the region level 1
first looks at when the cascade starts from a detector's or a dataset's face box (`start_box`),
and that rule run backwards (`box_from_points`: the box a detector would draw around true points).

`article` (SPEC.md, `crop_box`): centre level 1's predicted nose (original-image pixels);
d = its distance to the predicted left eye; box [nose_x - 2d, nose_x + 2d] x
[nose_y - 2d, nose_y + 2d], rounded, clipped to the image. The box is half-open: columns
x0..x1-1 and rows y0..y1-1.

`upright` (`upright_box`): the same square, not clipped (outside the image is black, so the
whole face is always in the crop at one scale: the article's weakness 2) and turned about
its centre so that the predicted eyes are level: a face rolled by any angle reaches level 2
upright. Measured on the MTFL copy (README, "Results on real faces").

A box may carry `angle`: the content is rotated by that many degrees (counter-clockwise on
screen, OpenCV's sense) about the box centre before the box is scaled to the network input;
`transform` is that rotation in the box's pixel-centre frame (landmarks.conventions.images.frame_matrix),
and `labels` / `unlabel` go through it.

Degenerate boxes fall back to the whole image (and say why), so that every image gets a
level-2 prediction: the predicted nose outside the image, a non-finite prediction, or a box
smaller than MIN_CROP pixels on a side after clipping.
"""
from dataclasses import dataclass

import numpy as np

from landmarks.conventions.labels import LEFT_EYE, NOSE, RIGHT_EYE, denormalise, normalise

HALF_SIZE_IN_D = 2.0  # the box spans 2d on each side of the nose
MIN_CROP = 8  # pixels; below this a crop carries too little to resize to 48x48 sensibly
CROP_RULES = ("article", "upright")
# The level-1 second look: a square this many "face sizes" (hypot of the inter-ocular and
# eye-to-mouth distances) across, centred on the five points' mean. The MTFL copy's images
# are 3.6 of them across (median); 3.2 shows the face a little larger and measured best.
FACE_BOX_SIDE = 3.2
# A face box from a detector (or a dataset) -> the region level 1 first looks at when the cascade
# starts from a box (`start_box`): the square face_box would give, from the box alone. Measured on
# 300 MTFL train faces with MTCNN's boxes (landmarks.runtime.mtcnn): the face size is 0.66 of the
# box's width and the five points' centre lies 0.09 widths below the box's centre (medians).
START_FACE_SIZE = 0.66
START_DROP = 0.09


@dataclass(frozen=True)
class CropBox:
    x0: int
    y0: int
    x1: int
    y1: int
    fallback: str = ""  # why the whole image was used instead, empty when the rule applied
    angle: float = 0.0  # degrees the content turns about the box centre (0: a plain crop)

    @property
    def width(self):
        return self.x1 - self.x0

    @property
    def height(self):
        return self.y1 - self.y0

    @property
    def transform(self):
        """The 2x3 rotation by `angle` about the box centre, in the box's pixel-centre frame
        (what landmarks.conventions.images.frame_matrix takes); None for a plain crop."""
        if not self.angle:
            return None
        a = np.deg2rad(self.angle)
        c, s = np.cos(a), np.sin(a)
        # OpenCV's getRotationMatrix2D (y down: positive turns counter-clockwise on screen)
        cx, cy = (self.width - 1) / 2.0, (self.height - 1) / 2.0
        return np.array([[c, s, (1 - c) * cx - s * cy], [-s, c, s * cx + (1 - c) * cy]])

    def to_crop(self, points):
        """Original-image pixel points (..., k, 2) -> pixel points inside the (turned) crop."""
        q = np.asarray(points, dtype=np.float64) - np.array([self.x0, self.y0], dtype=np.float64)
        t = self.transform
        return q if t is None else q @ t[:, :2].T + t[:, 2]

    def from_crop(self, points):
        """Pixel points inside the (turned) crop -> original-image pixel points."""
        q = np.asarray(points, dtype=np.float64)
        t = self.transform
        if t is not None:
            q = (q - t[:, 2]) @ np.linalg.inv(t[:, :2]).T
        return q + np.array([self.x0, self.y0], dtype=np.float64)

    def labels(self, points):
        """Ground-truth original-image points -> level-2 labels (normalised in the crop)."""
        return normalise(self.to_crop(points), self.width, self.height)

    def unlabel(self, normalised):
        """Level-2 network output (normalised in the crop) -> original-image pixel points."""
        return self.from_crop(denormalise(normalised, self.width, self.height))

    def cut(self, image):
        """The crop of an H x W (x C) image array (a plain crop inside the image only)."""
        if self.angle or self.x0 < 0 or self.y0 < 0:
            raise ValueError("cut() takes a plain crop inside the image; render a turned or overhanging box "
                             "with landmarks.conventions.images")
        return image[self.y0:self.y1, self.x0:self.x1]


def _whole(width, height, why):
    """The whole image: the fallback box, saying `why`."""
    return CropBox(0, 0, int(width), int(height), fallback=why)


def _unusable(predicted, anchor, width, height, what):
    """Why `predicted` cannot place a box around `anchor` ("" when it can): a non-finite
    point, or the anchor (the predicted `what`) outside the image."""
    if not np.all(np.isfinite(predicted)):
        return "non-finite prediction"
    if not (0 <= anchor[0] <= width - 1 and 0 <= anchor[1] <= height - 1):
        return f"predicted {what} outside the image"
    return ""


def crop_box(predicted, width, height):
    """The crop for one image from level 1's predicted pixel points (shape (5, 2))."""
    predicted = np.asarray(predicted, dtype=np.float64)
    nose_x, nose_y = predicted[NOSE]
    why = _unusable(predicted, predicted[NOSE], width, height, "nose")
    if why:
        return _whole(width, height, why)
    half = HALF_SIZE_IN_D * float(np.hypot(*(predicted[LEFT_EYE] - predicted[NOSE])))
    x0 = max(0, int(round(nose_x - half)))
    y0 = max(0, int(round(nose_y - half)))
    x1 = min(int(width), int(round(nose_x + half)))
    y1 = min(int(height), int(round(nose_y + half)))
    if x1 - x0 < MIN_CROP or y1 - y0 < MIN_CROP:
        return _whole(width, height, f"crop under {MIN_CROP} px")
    return CropBox(x0, y0, x1, y1)


def _eye_angle(predicted):
    """Degrees that level the predicted eyes (OpenCV's sense, see CropBox.angle)."""
    dx, dy = predicted[RIGHT_EYE] - predicted[LEFT_EYE]
    return float(np.degrees(np.arctan2(dy, dx)))


def _square(centre, half, angle):
    """A half-open square of side 2*half (rounded, at least MIN_CROP) centred on `centre`."""
    side = max(MIN_CROP, int(round(2 * half)))
    x0, y0 = int(round(centre[0] - side / 2.0)), int(round(centre[1] - side / 2.0))
    return CropBox(x0, y0, x0 + side, y0 + side, angle=angle)


def upright_box(predicted, width, height):
    """The `upright` crop for one image from level 1's predicted pixel points (5, 2): the
    article's square around the nose, unclipped, turned so that the predicted eyes are level.
    Falls back to the whole image as `crop_box` does (non-finite, nose outside the image)."""
    predicted = np.asarray(predicted, dtype=np.float64)
    nose = predicted[NOSE]
    why = _unusable(predicted, nose, width, height, "nose")
    if why:
        return _whole(width, height, why)
    half = HALF_SIZE_IN_D * float(np.hypot(*(predicted[LEFT_EYE] - nose)))
    return _square(nose, half, _eye_angle(predicted))


def face_box(predicted, width, height):
    """The upright square around a whole face that level 1 looks at a second time
    (landmarks.runtime.inference, `refine`): FACE_BOX_SIDE face sizes across, centred on the points'
    mean, turned so that the eyes are level. The whole image where the points are unusable."""
    predicted = np.asarray(predicted, dtype=np.float64)
    centre = predicted.mean(axis=0)
    why = _unusable(predicted, centre, width, height, "face")
    if why:
        return _whole(width, height, why)
    return _square(centre, FACE_BOX_SIDE * face_size(predicted) / 2.0, _eye_angle(predicted))


def start_box(box, width, height):
    """The upright square level 1 first looks at for a face in `box` (x0, y0, x1, y1), half-open
    pixels: FACE_BOX_SIDE face sizes across, the face size and centre read off the box as
    START_FACE_SIZE and START_DROP say. The whole image for a box that is not finite or empty."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0)
    if not np.isfinite([x0, y0, x1, y1]).all() or side <= 0:
        return _whole(width, height, "unusable face box")
    centre = np.array([(x0 + x1 - 1) / 2.0, (y0 + y1 - 1) / 2.0 + START_DROP * side])
    return _square(centre, FACE_BOX_SIDE * START_FACE_SIZE * side / 2.0, 0.0)


def face_size(points):
    """The face size of five points (pixels): hypot of the inter-ocular and eye-to-mouth distances."""
    points = np.asarray(points, dtype=np.float64)
    eyes = points[RIGHT_EYE] - points[LEFT_EYE]
    eyes_to_mouth = (points[3] + points[4] - points[LEFT_EYE] - points[RIGHT_EYE]) / 2.0
    return float(np.hypot(np.hypot(*eyes), np.hypot(*eyes_to_mouth)))


def box_from_points(points):
    """The face box (x0, y0, x1, y1), half-open pixels, that a detector of MTCNN's tightness would
    draw around five true points: start_box's rule run backwards (width = face size /
    START_FACE_SIZE, centre START_DROP widths above the points' mean), so that start_box of it is
    the region the points themselves call for. The "true box" the detection benchmark starts from."""
    points = np.asarray(points, dtype=np.float64)
    side = face_size(points) / START_FACE_SIZE
    cx, cy = points.mean(axis=0) - [0.0, START_DROP * side]
    x0, y0 = cx - side / 2.0 + 0.5, cy - side / 2.0 + 0.5
    return (float(x0), float(y0), float(x0 + side), float(y0 + side))


def level2_box(rule, predicted, width, height):
    """The level-2 crop of rule `rule` (CROP_RULES)."""
    if rule == "article":
        return crop_box(predicted, width, height)
    if rule == "upright":
        return upright_box(predicted, width, height)
    raise ValueError(f"unknown crop rule {rule!r}; choose from {', '.join(CROP_RULES)}")
