"""Owns MTCNN (Zhang et al. 2016, the authors' Caffe models in models/mtcnn/) run in this
project: the face detector (P-Net over an image pyramid, R-Net, O-Net: NMS, box regression and
squaring as the authors' detect_face.m does them, vectorised in NumPy), O-Net's five points
(v1: averaged with O-Net's answer on the mirrored crop), and v2's per-point refinement (L-Net:
a patch around each point), on any graph backend (landmarks.runtime.backends.load_graph: our
Caffe by default, OpenCV's dnn, or ONNX Runtime on the nets converted by
landmarks.deploy.mtcnn_onnx).

MTCNN's input convention is its own and is owned here (the nets were trained through MATLAB's
Caffe): RGB, (pixel - 127.5) / 128, the image transposed (C x W x H). The reference indexes
pixels from 1; the arithmetic below keeps its numbers (boxes are its inclusive 1-based boxes)
and converts once, on the way out, to this project's convention (0-based pixel centres,
landmarks.conventions.labels): `Face.box` is half-open (x0, y0, x1, y1) in 0-based pixels and
the points are shifted by POINT_OFFSET (why and how much: its comment).
"""
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from landmarks.runtime.backends import load_graph

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "mtcnn"
NETS = {"pnet": "det1", "rnet": "det2", "onet": "det3", "lnet": "det4"}
THRESHOLDS = (0.6, 0.7, 0.7)  # the reference's, P-Net, R-Net, O-Net
FACTOR = 0.709  # pyramid scale step
MIN_FACE = 20  # pixels
POINT_MODES = ("onet", "lnet")  # v1: O-Net (mirror-averaged); v2: O-Net then L-Net
# The reference's O-Net points, x1 - 1 + w * p for a box starting at 1-based column x1, put the
# box's pixel EDGES on integers (the mirror's 1 - p agrees): this project's pixel centres are half
# a pixel further. L-Net's patch arithmetic adds half a pixel more. Measured on MTFL val (the mean
# offset from the true points, README "MTCNN beside us"): O-Net -0.13 px, L-Net -0.08 px after these.
POINT_OFFSET = {"onet": -0.5, "lnet": -1.0}
MIRROR = [1, 0, 2, 4, 3]  # the point order of a mirrored face (eyes and mouth corners swap)
CELL, STRIDE = 12, 2  # P-Net's window and step on its input


@dataclass
class Face:
    """One detected face: box half-open (x0, y0, x1, y1) in 0-based pixels, the detector's
    score, `points` (5, 2) 0-based pixels in the point order of landmarks.conventions.labels
    (the chosen mode's: O-Net's, or L-Net's refinement of them)."""
    box: tuple
    score: float
    points: np.ndarray = field(repr=False)

    @property
    def width(self):
        return self.box[2] - self.box[0]


def net_files(model_dir=MODEL_DIR, backend="caffe"):
    """{net: files} of the four nets in model_dir: (prototxt, caffemodel), or for onnxruntime
    (detN.onnx,) (landmarks.deploy.mtcnn_onnx writes them from the Caffe files)."""
    model_dir = Path(model_dir)
    if backend == "onnxruntime":
        return {net: (model_dir / f"{stem}.onnx",) for net, stem in NETS.items()}
    return {net: (model_dir / f"{stem}.prototxt", model_dir / f"{stem}.caffemodel") for net, stem in NETS.items()}


def network_input(patches):
    """(N, H, W, 3) RGB uint8/float patches -> (N, 3, W, H) float32, MTCNN's convention."""
    patches = np.asarray(patches, dtype=np.float32)
    return np.ascontiguousarray(((patches - 127.5) * 0.0078125).transpose(0, 3, 2, 1))


def _resize(image, width, height):
    shrink = width < image.shape[1] or height < image.shape[0]
    return cv2.resize(image, (int(width), int(height)), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def scales(width, height, min_face=MIN_FACE, factor=FACTOR):
    """The pyramid's scales: the first maps min_face to P-Net's 12-pixel window."""
    m = CELL / float(min_face)
    side, out = min(width, height) * m, []
    while side >= CELL:
        out.append(m * factor ** len(out))
        side *= factor
    return out


def nms(boxes, threshold, kind="union"):
    """Indices kept by greedy non-maximum suppression, highest score first. boxes: (n, >=5)
    x1 y1 x2 y2 score, inclusive pixel boxes (areas count the +1, as the reference does);
    kind: 'union' (IoU) or 'min' (overlap over the smaller box)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=int)
    x1, y1, x2, y2, score = (boxes[:, i] for i in range(5))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(score, kind="stable")
    keep = []
    while order.size:
        i, rest = order[-1], order[:-1]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        overlap = inter / (np.minimum(area[i], area[rest]) if kind == "min" else area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.array(keep, dtype=int)


def square(boxes):
    """The reference's rerec: each box made square on its larger side, same centre."""
    boxes = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    boxes[:, 0] += w * 0.5 - side * 0.5
    boxes[:, 1] += h * 0.5 - side * 0.5
    boxes[:, 2:4] = boxes[:, 0:2] + side[:, None]
    return boxes


def regress(boxes, offsets):
    """The reference's bbreg: box edges moved by offsets (n, 4) in box sizes (width + 1)."""
    boxes = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, :4] += offsets[:, :4] * np.stack([w, h, w, h], axis=1)
    return boxes


def crops(image, boxes, size):
    """(n, size, size, 3) patches of inclusive 1-based boxes, zero outside the image (the
    reference's pad), each resized to size x size."""
    height, width = image.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), dtype=np.float32)
    for k, (x1, y1, x2, y2) in enumerate(np.asarray(boxes)[:, :4].astype(int)):
        w, h = x2 - x1 + 1, y2 - y1 + 1
        if w < 1 or h < 1:
            continue
        patch = np.zeros((h, w, 3), dtype=image.dtype)
        sx0, sy0, sx1, sy1 = max(x1, 1), max(y1, 1), min(x2, width), min(y2, height)
        if sx1 >= sx0 and sy1 >= sy0:
            patch[sy0 - y1:sy1 - y1 + 1, sx0 - x1:sx1 - x1 + 1] = image[sy0 - 1:sy1, sx0 - 1:sx1]
        out[k] = _resize(patch, size, size)
    return out


class MTCNN:
    """The detector and its points. backend: 'caffe' (our build) or 'opencv' with model_dir
    holding the Caffe files, or 'onnxruntime' with model_dir holding detN.onnx (use
    landmarks.deploy.mtcnn_onnx.detector, which converts the shipped models once); points: 'onet'
    (v1) or 'lnet' (v2: O-Net, then L-Net on a patch around each point)."""

    def __init__(self, model_dir=MODEL_DIR, backend="caffe", min_face=MIN_FACE, thresholds=THRESHOLDS,
                 factor=FACTOR, points="lnet"):
        if points not in POINT_MODES:
            raise ValueError(f"unknown MTCNN point mode {points!r}; choose from {', '.join(POINT_MODES)}")
        if min_face < CELL:
            raise ValueError(f"the smallest face MTCNN can find is {CELL} pixels, got {min_face}")
        files = net_files(model_dir, backend)
        needed = ("pnet", "rnet", "onet") + (("lnet",) if points == "lnet" else ())
        self.nets = {name: load_graph(backend, *files[name]) for name in needed}
        self.backend, self.min_face, self.thresholds, self.factor = backend, min_face, tuple(thresholds), factor
        self.mode = points

    # ---- the three detection stages, in the reference's 1-based inclusive boxes -------------

    def _proposals(self, rgb):
        height, width = rgb.shape[:2]
        found = []
        for scale in scales(width, height, self.min_face, self.factor):
            ws, hs = int(np.ceil(width * scale)), int(np.ceil(height * scale))
            prob, reg = self.nets["pnet"].run(network_input(_resize(rgb, ws, hs)[None]), ("prob1", "conv4-2"))
            heat = prob[0, 1]  # axis 0 runs along the image's x, axis 1 along its y (the input is transposed)
            xs, ys = np.nonzero(heat >= self.thresholds[0])
            if not len(xs):
                continue
            boxes = np.column_stack([np.fix((STRIDE * xs + 1) / scale), np.fix((STRIDE * ys + 1) / scale),
                                     np.fix((STRIDE * xs + CELL) / scale), np.fix((STRIDE * ys + CELL) / scale),
                                     heat[xs, ys], reg[0][:, xs, ys].T])
            found.append(boxes[nms(boxes, 0.5)])
        if not found:
            return np.zeros((0, 5))
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes, 0.7)]
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        moved = boxes[:, :4] + boxes[:, 5:9] * np.stack([w, h, w, h], axis=1)
        boxes = square(np.column_stack([moved, boxes[:, 4]]))
        boxes[:, :4] = np.fix(boxes[:, :4])
        return boxes

    def _refine(self, rgb, boxes):
        if not len(boxes):
            return boxes
        prob, reg = self.nets["rnet"].run(network_input(crops(rgb, boxes, 24)), ("prob1", "conv5-2"))
        score = prob.reshape(len(boxes), -1)[:, 1]
        passed = score > self.thresholds[1]
        boxes = np.column_stack([boxes[passed, :4], score[passed]])
        reg = reg.reshape(len(score), -1)[passed]
        keep = nms(boxes, 0.7)
        return square(regress(boxes[keep], reg[keep]))

    def _output(self, rgb, boxes):
        """O-Net on squared boxes: (boxes after regression and NMS, O-Net points (n, 5, 2) in
        the reference's pixels, the boxes the points were read in)."""
        if not len(boxes):
            return np.zeros((0, 5)), np.zeros((0, 5, 2)), np.zeros((0, 5))
        boxes = np.fix(boxes)
        patches = crops(rgb, boxes, 48)
        reg, pts, prob = self.nets["onet"].run(network_input(patches), ("conv6-2", "conv6-3", "prob1"))
        score = prob.reshape(len(boxes), -1)[:, 1]
        passed = score > self.thresholds[2]
        read_in = np.column_stack([boxes[passed, :4], score[passed]])
        moved = regress(read_in, reg.reshape(len(boxes), -1)[passed])
        keep = nms(moved, 0.7, "min")
        fractions = pts.reshape(len(boxes), 10)[passed][keep]
        if not len(keep):
            return np.zeros((0, 5)), np.zeros((0, 5, 2)), np.zeros((0, 5))
        if self.mode == "onet":
            fractions = self._mirror_averaged(fractions, patches[passed][keep])
        return moved[keep], self._to_pixels(fractions, read_in[keep]), read_in[keep]

    def _mirror_averaged(self, fractions, patches):
        """v1: O-Net's point fractions (n, 10) averaged with its answer on the mirrored crops,
        mirrored back (x -> 1 - x, left and right points swapped)."""
        mirrored = self.nets["onet"].run(network_input(patches[:, :, ::-1]), ("conv6-3",))[0].reshape(len(patches), 10)
        return 0.5 * (fractions + np.concatenate([1 - mirrored[:, :5][:, MIRROR], mirrored[:, 5:][:, MIRROR]], axis=1))

    @staticmethod
    def _to_pixels(fractions, boxes):
        w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
        xs = w[:, None] * fractions[:, :5] + boxes[:, 0:1] - 1
        ys = h[:, None] * fractions[:, 5:] + boxes[:, 1:2] - 1
        return np.stack([xs, ys], axis=2)

    def _per_point(self, rgb, boxes, points):
        """v2's extended stage: each point moved by L-Net's answer on a patch around it."""
        if not len(boxes):
            return points
        side = np.fix(0.25 * np.maximum(boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1))
        side += side % 2
        stack = []
        for k in range(5):
            x, y = np.fix(points[:, k, 0] - 0.5 * side), np.fix(points[:, k, 1] - 0.5 * side)
            stack.append(crops(rgb, np.stack([x, y, x + side, y + side], axis=1), 24))
        batch = np.concatenate([network_input(patches) for patches in stack], axis=1)  # (n, 15, 24, 24)
        answers = self.nets["lnet"].run(batch, [f"fc5_{k + 1}" for k in range(5)])
        refined = points.copy()
        for k, answer in enumerate(answers):
            answer = answer.reshape(len(boxes), 2).copy()
            answer[(np.abs(answer - 0.5) > 0.35).any(axis=1)] = 0.5  # no large moves
            refined[:, k] = points[:, k] - 0.5 * side[:, None] + answer * side[:, None]
        return refined

    # ---- the public calls, in this project's convention ------------------------------------

    def detect(self, image, max_faces=None):
        """Every face of a BGR image, highest score first: [Face]."""
        rgb = np.ascontiguousarray(image[:, :, ::-1]).astype(np.float32)
        boxes, points, read_in = self._output(rgb, self._refine(rgb, self._proposals(rgb)))
        if self.mode == "lnet":
            points = self._per_point(rgb, boxes, points)
        return self._faces(boxes, points, max_faces)

    def points_in_boxes(self, image, boxes):
        """O-Net's (and L-Net's) points for faces whose boxes are given, (x0, y0, x1, y1) half-open
        0-based pixels (a dataset's or another detector's), without the detection stages: each box
        squared as the detector squares its own; (n, 5, 2) 0-based pixels."""
        rgb = np.ascontiguousarray(image[:, :, ::-1]).astype(np.float32)
        given = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if not len(given):
            return np.zeros((0, 5, 2))
        ref = np.column_stack([given[:, 0] + 1, given[:, 1] + 1, given[:, 2], given[:, 3], np.ones(len(given))])
        ref = np.fix(square(ref))
        patches = crops(rgb, ref, 48)
        fractions = self.nets["onet"].run(network_input(patches), ("conv6-3",))[0].reshape(len(ref), 10)
        if self.mode == "onet":
            fractions = self._mirror_averaged(fractions, patches)
        points = self._to_pixels(fractions, ref)
        if self.mode == "lnet":
            points = self._per_point(rgb, ref, points)
        return points + POINT_OFFSET[self.mode]

    def _faces(self, boxes, points, max_faces):
        order = np.argsort(-boxes[:, 4], kind="stable")[:max_faces]
        return [Face(box=(float(boxes[i, 0] - 1), float(boxes[i, 1] - 1), float(boxes[i, 2]), float(boxes[i, 3])),
                     score=float(boxes[i, 4]), points=points[i] + POINT_OFFSET[self.mode]) for i in order]
