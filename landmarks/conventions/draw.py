"""Owns how points are drawn on images, in the article's colours: ground truth green,
level 1 red, level 2 blue (BGR, as OpenCV stores images)."""
import cv2
import numpy as np

COLOURS = {"truth": (0, 200, 0), "level1": (0, 0, 255), "level2": (255, 0, 0)}


def draw_points(image, points, colour, radius=None):
    """Draws (k, 2) pixel points on a BGR image in place; returns the image."""
    if radius is None:
        radius = max(2, int(round(max(image.shape[:2]) / 150)))
    for x, y in np.asarray(points, dtype=np.float64):
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(image, (int(round(x)), int(round(y))), radius, colour, -1, cv2.LINE_AA)
    return image


def draw_box(image, box, colour=(0, 255, 255)):
    """Draws a crop box (anything with x0, y0, x1, y1) in place; a turned one (a
    landmarks.conventions.crop.CropBox with an angle) as the turned square level 2 saw."""
    thickness = max(1, int(round(max(image.shape[:2]) / 400)))
    if not getattr(box, "angle", 0):
        cv2.rectangle(image, (box.x0, box.y0), (box.x1 - 1, box.y1 - 1), colour, thickness)
        return image
    w, h = box.width - 1, box.height - 1
    corners = box.from_crop(np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64))
    cv2.polylines(image, [np.rint(corners).astype(np.int32)], True, colour, thickness, cv2.LINE_AA)
    return image


def annotate(image, truth=None, level1=None, level2=None, box=None):
    """A copy of the image with whichever of the point sets are given."""
    out = image.copy()
    if box is not None:
        draw_box(out, box)
    for name, points in (("truth", truth), ("level1", level1), ("level2", level2)):
        if points is not None:
            draw_points(out, points, COLOURS[name])
    return out
