"""Owns measuring the baseline beside our cascade on the same images: MTCNN's five points
(landmarks.runtime.mtcnn), v1's (O-Net, mirror-averaged) and v2's (O-Net then L-Net), each
from its own detection and, where the dataset gives face boxes, from the given box.

From its own detection, an image's face is the detected face whose box holds the centre of the
true points (the highest-scoring one when several do); an image where none does is a miss,
counted and left out of that row's errors (`found` says which images a row scored).
"""
from dataclasses import dataclass

import numpy as np

from landmarks.conventions.images import ImageError, read_bgr
from landmarks.deploy.mtcnn_onnx import detector as open_detector
from landmarks.deploy.mtcnn_onnx import detector_backend
from landmarks.runtime.mtcnn import POINT_MODES

LABELS = {"onet": "MTCNN v1 (O-Net)", "lnet": "MTCNN v2 (+ L-Net)"}
SOURCES = {"detected": "its detection", "box": "given box"}


@dataclass
class BaselineRow:
    key: str  # e.g. "mtcnn-lnet-detected"
    label: str  # for tables
    found: np.ndarray  # (N,) bool: the images this row scored
    points: np.ndarray  # (N, 5, 2) pixels (NaN where not found)


def matching_face(faces, truth):
    """The detected face that holds the true points' centre (highest score first), or None."""
    cx, cy = np.asarray(truth, dtype=np.float64).reshape(-1, 2).mean(axis=0)
    for face in faces:  # detect() returns them highest score first
        x0, y0, x1, y1 = face.box
        if x0 <= cx <= x1 and y0 <= cy <= y1:
            return face
    return None


def mtcnn_rows(paths, truths, boxes=None, backend="caffe", progress=None):
    """BaselineRows of MTCNN v1 and v2 on image files with their true points; boxes: the
    dataset's face boxes (N, 4) half-open pixels, or None. progress: called once per image."""
    count = len(paths)
    rows = {}
    detectors = {mode: open_detector(detector_backend(backend), points=mode) for mode in POINT_MODES}
    sources = ("detected", "box") if boxes is not None else ("detected",)
    for mode in POINT_MODES:
        for source in sources:
            rows[(mode, source)] = BaselineRow(f"mtcnn-{mode}-{source}", f"{LABELS[mode]}, {SOURCES[source]}",
                                               np.zeros(count, dtype=bool), np.full((count, 5, 2), np.nan))
    for index, (path, truth) in enumerate(zip(paths, truths)):
        try:
            image, _ = read_bgr(path)
        except ImageError:
            image = None
        if image is not None:
            for mode, detector in detectors.items():
                face = matching_face(detector.detect(image), truth)
                if face is not None:
                    rows[(mode, "detected")].found[index] = True
                    rows[(mode, "detected")].points[index] = face.points
                if boxes is not None:
                    rows[(mode, "box")].found[index] = True
                    rows[(mode, "box")].points[index] = detector.points_in_boxes(image, [boxes[index]])[0]
        if progress:
            progress()
    return list(rows.values())
