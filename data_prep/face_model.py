"""Owns the drawn face of the synthetic CelebA: a head ellipsoid turned by yaw, pitch and roll
and projected orthographically, with eyes, brows, nose, mouth and hair on its surface.

`face_points(params)` gives the five landmarks (eye centres, nose tip, mouth corners, CelebA's
order) exactly where `draw_face` puts their dark marks, so a label can be checked against the
pixels; `face_box` is the head's bounding box; `render_face` draws one face on a plain
background (for tests and augmentation checks); data_prep.synthetic puts faces in scenes.
"""
import math
from dataclasses import dataclass

import cv2
import numpy as np

HEAD_AXES = np.array([1.0, 1.3, 0.8])  # half-width, half-height, depth, in face half-widths
NOSE_LIFT = 0.3  # the nose tip stands this far in front of the head surface
_SHIFT = 4  # cv2 fixed-point bits: features are drawn at 1/16 px so that dots sit on the labels
_AA = cv2.LINE_AA


@dataclass(frozen=True)
class FaceParams:
    """One face. Lengths of the face model are in units of half_width (a, in pixels)."""
    center: tuple  # (x, y) pixel position of the head's centre
    half_width: float  # a: the head is 2a wide and 2.6a high when frontal
    roll: float = 0.0  # degrees; positive turns the face clockwise on screen (y points down)
    yaw: float = 0.0  # degrees; positive turns the face toward the image's right
    pitch: float = 0.0  # degrees; positive lifts the chin
    skin: tuple = (140, 165, 210)  # BGR
    hair: tuple = (35, 40, 50)
    lips: tuple = (95, 95, 185)
    iris: tuple = (40, 60, 90)
    eye_x: float = 0.4  # eyes at x = -eye_x (image left) and +eye_x
    eye_y: float = -0.15
    nose_y: float = 0.2
    mouth_y: float = 0.5
    mouth_half_width: float = 0.3
    long_hair: bool = True
    glasses: bool = False


def _rotation(p):
    yaw, pitch, roll = np.radians([p.yaw, p.pitch, p.roll])
    cy, sy, cp, sp, cr, sr = (math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch),
                              math.cos(roll), math.sin(roll))
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return r_roll @ r_pitch @ r_yaw


def _surface(x, y, lift=0.0):
    """3D points (n, 3) on the front of the head at face coordinates x, y."""
    x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
    inside = np.maximum(0.0, 1.0 - x ** 2 - (y / HEAD_AXES[1]) ** 2)
    return np.stack([x, y, HEAD_AXES[2] * np.sqrt(inside) + lift], axis=-1).reshape(-1, 3)


def _project(p, rot, xyz):
    return (xyz @ rot.T)[:, :2] * p.half_width + np.asarray(p.center, float)


def _silhouette_cov(p, rot):
    # Orthographic projection of an ellipsoid is the ellipse of the projected covariance.
    return (rot @ np.diag(HEAD_AXES ** 2) @ rot.T)[:2, :2] * p.half_width ** 2


def face_points(params):
    """The five landmarks (5, 2) in pixels, CelebA's order, for a face drawn with params."""
    p, rot = params, _rotation(params)
    ex, mx = p.eye_x, p.mouth_half_width
    xyz = np.concatenate([_surface([-ex, ex], p.eye_y), _surface(0.0, p.nose_y, NOSE_LIFT),
                          _surface([-mx, mx], p.mouth_y)])
    return _project(p, rot, xyz)


def face_box(params):
    """The head's axis-aligned bounding box (x0, y0, x1, y1) in pixels: the "face region"."""
    half = np.sqrt(np.diag(_silhouette_cov(params, _rotation(params))))
    cx, cy = params.center
    return cx - half[0], cy - half[1], cx + half[0], cy + half[1]


def _fx(points):
    return np.round(np.asarray(points, float) * (1 << _SHIFT)).astype(np.int32)


def _pt(point):
    x, y = _fx(point).ravel()
    return int(x), int(y)


def _dot(img, centre, radius, colour):
    cv2.circle(img, _pt(centre), int(round(radius * (1 << _SHIFT))), colour, -1, _AA, _SHIFT)


def ellipse(img, centre, axes, angle, colour, thickness=-1, arc=(0, 360)):
    """An anti-aliased ellipse at sub-pixel precision (centre and axes in float pixels)."""
    cv2.ellipse(img, _pt(centre), _pt(axes), float(angle), arc[0], arc[1], colour, thickness, _AA, _SHIFT)


def scaled(colour, k):
    """A colour made k times brighter (k < 1: darker), saturating at 255."""
    return tuple(float(min(255.0, c * k)) for c in colour)


def draw_face(image, params):
    """Draw a face on image (BGR uint8, in place); return its five landmarks (5, 2) in pixels."""
    p, rot = params, _rotation(params)
    a = p.half_width

    def proj(xyz):
        return _project(p, rot, xyz)

    thin = max(1, int(round(0.025 * a)))
    # Head silhouette (and long hair behind it) from the projected ellipsoid.
    evals, evecs = np.linalg.eigh(_silhouette_cov(p, rot))
    axes, angle = np.sqrt(evals), math.degrees(math.atan2(evecs[1, 0], evecs[0, 0]))
    if p.long_hair:
        ellipse(image, proj(np.array([[0.0, 0.25, 0.0]])), axes * (1.12, 1.2), angle, p.hair)
    ellipse(image, p.center, axes, angle, p.skin)
    # Hair cap: the hairline across the forehead, closed over the top of the head.
    hx = np.linspace(-1.0, 1.0, 15)
    t = np.linspace(0.0, math.pi, 15)
    top = np.stack([1.06 * np.cos(t), -1.06 * HEAD_AXES[1] * np.sin(t), 0 * t], axis=-1)
    cap = np.concatenate([proj(_surface(hx, -0.62 + 0.25 * hx ** 2)), proj(top)])
    cv2.fillPoly(image, [_fx(cap)], p.hair, _AA, _SHIFT)
    points = face_points(p)
    # Eyebrows, then eyes: sclera between the projected corners, iris, pupil on the label.
    for side, centre in ((-1, points[0]), (1, points[1])):
        ex = side * p.eye_x
        brow = proj(_surface(ex + np.array([-0.17, 0.0, 0.17]), p.eye_y - np.array([0.17, 0.22, 0.18])))
        cv2.polylines(image, [_fx(brow)], False, scaled(p.hair, 0.8), max(1, int(0.05 * a)), _AA, _SHIFT)
        corners = proj(_surface(ex + np.array([-0.14, 0.14]), p.eye_y))
        lid = proj(_surface(ex, p.eye_y - 0.065))[0]
        span = corners[1] - corners[0]
        half_w, half_h = np.linalg.norm(span) / 2, max(1.0, np.linalg.norm(lid - centre))
        eye_angle = math.degrees(math.atan2(span[1], span[0]))
        ellipse(image, centre, (half_w, half_h), eye_angle, (235, 238, 240))
        _dot(image, centre, max(1.6, 0.075 * a), p.iris)
        _dot(image, centre, max(1.1, 0.035 * a), (15, 15, 15))
        ellipse(image, centre, (half_w, half_h), eye_angle, (30, 30, 30), thin, (180, 360))
        if p.glasses:
            ellipse(image, centre, (0.2 * a, 0.17 * a), eye_angle, (25, 25, 25), thin)
    if p.glasses:
        bridge = proj(_surface([-p.eye_x + 0.2, p.eye_x - 0.2], p.eye_y, 0.05))
        cv2.polylines(image, [_fx(bridge)], False, (25, 25, 25), thin, _AA, _SHIFT)
    # Nose: a bridge line, lighter nostrils, and a dark mark on the tip (the label).
    ridge = proj(_surface([0.0, 0.0], [p.eye_y + 0.08, p.nose_y - 0.06], [0.1, NOSE_LIFT * 0.8]))
    cv2.polylines(image, [_fx(ridge)], False, scaled(p.skin, 0.8), thin, _AA, _SHIFT)
    for nostril in proj(_surface([-0.08, 0.08], p.nose_y + 0.05, NOSE_LIFT * 0.5)):
        _dot(image, nostril, max(0.8, 0.025 * a), scaled(p.skin, 0.6))
    _dot(image, points[2], max(1.2, 0.045 * a), scaled(p.skin, 0.3))
    # Mouth: lips between the corners, the parting line, dark marks on the corners (labels).
    mx = np.linspace(-p.mouth_half_width, p.mouth_half_width, 11)
    bulge = 1.0 - (mx / p.mouth_half_width) ** 2
    upper, lower = proj(_surface(mx, p.mouth_y - 0.06 * bulge)), proj(_surface(mx, p.mouth_y + 0.08 * bulge))
    cv2.fillPoly(image, [_fx(np.concatenate([upper, lower[::-1]]))], p.lips, _AA, _SHIFT)
    parting = proj(_surface(mx, p.mouth_y + 0.01 * bulge))
    cv2.polylines(image, [_fx(parting)], False, scaled(p.lips, 0.45), thin, _AA, _SHIFT)
    for corner in points[3:]:
        _dot(image, corner, max(1.1, 0.035 * a), (20, 20, 25))
    return points


def render_face(params, width, height, background=(128, 128, 128)):
    """A face drawn on a plain background, nothing else: (image BGR uint8, points (5, 2))."""
    image = np.empty((int(height), int(width), 3), np.uint8)
    image[:] = background
    return image, draw_face(image, params)
