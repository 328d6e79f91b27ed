"""Owns steady points on video: faces found by a detector (landmarks.runtime.mtcnn) every N
frames or when a face is lost, carried between detections by the cascade itself (each frame,
level 1 first looks at the upright square around the face's previous points,
landmarks.conventions.crop.face_box, the region of its second look), and a One-Euro filter on the
points (Casiez et al. 2012: a low-pass filter whose cut-off rises with the points' speed, so
still points are steady and moving ones do not lag), switchable.

A track is lost when its points no longer make a usable face box (landmarks.conventions.crop:
non-finite, or the face outside the frame) or when the face has shrunk below the detector's
smallest face; the next frame is then a detection frame.
"""
import math
from dataclasses import dataclass, field

import numpy as np

from landmarks.conventions.crop import face_box
from landmarks.conventions.images import in_memory
from landmarks.runtime.starts import face_starts

DETECT_EVERY = 10
# The filter's settings, chosen with tools/bench_jitter.py on 6 MTFL val faces (still / moving
# clips: jitter ratio raw/filtered, moving error change): (1, 5) 5.4x / +1.3%, (1, 20) 3.6x / +0.1%,
# (2, 10) 3.4x / +0.4%, (0.7, 15) 4.4x / +0.2%, lag 0.1 frame: the last is the default.
MIN_CUTOFF = 0.7  # Hz: the still face's cut-off (lower: steadier, more lag when it starts to move)
BETA = 15.0  # cut-off gain per (inter-ocular distances per second) of speed
D_CUTOFF = 1.0  # Hz: the speed estimate's own smoothing
MATCH_DISTANCE = 0.5  # a detection continues a track when its centre is within this many face widths


def _alpha(cutoff, dt):
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    """A One-Euro filter on (k, 2) points, the speed measured in face sizes (the inter-ocular
    distance of the filtered points) per second, so one setting suits any face size."""

    def __init__(self, min_cutoff=MIN_CUTOFF, beta=BETA, d_cutoff=D_CUTOFF):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.value = self.speed = None

    def __call__(self, points, dt):
        points = np.asarray(points, dtype=np.float64)
        if self.value is None:
            self.value, self.speed = points.copy(), np.zeros_like(points)
            return self.value.copy()
        scale = max(1.0, float(np.linalg.norm(self.value[1] - self.value[0])))
        speed = (points - self.value) / dt / scale
        self.speed = self.speed + _alpha(self.d_cutoff, dt) * (speed - self.speed)
        cutoff = self.min_cutoff + self.beta * np.linalg.norm(self.speed, axis=-1, keepdims=True)
        alpha = np.vectorize(_alpha)(cutoff, dt)
        self.value = self.value + alpha * (points - self.value)
        return self.value.copy()


@dataclass
class Track:
    face: int  # 1, 2, ... in order of appearance
    raw: np.ndarray  # (5, 2) the cascade's points on the last frame
    points: np.ndarray  # (5, 2) filtered (= raw without the filter)
    box: tuple  # the detector's last box, or the region level 1 looked at
    filter: object = field(default=None, repr=False)


class Tracker:
    """Feed frames in order (`step(frame, dt)`); each step returns the live Tracks."""

    def __init__(self, cascade, detector, every=DETECT_EVERY, smooth=True, max_faces=0, filter_options=None):
        self.cascade, self.detector, self.every, self.smooth = cascade, detector, max(1, int(every)), smooth
        self.max_faces, self.filter_options = max_faces, filter_options or {}
        self.tracks, self.frame, self.next_face, self.lost = [], 0, 1, False
        self.detections = 0

    def _cascade(self, source, starts):
        first, sizes = self.cascade.level1_batch([source] * len(starts), starts)
        if self.cascade.level2 is None:
            return list(first)
        second, _ = self.cascade.level2_batch([source] * len(starts), first, sizes)
        return list(second)

    def _detect(self, frame, source):
        height, width = frame.shape[:2]
        faces = self.detector.detect(frame, max_faces=self.max_faces or None)
        self.detections += 1
        starts = face_starts(faces, width, height)
        points = self._cascade(source, starts) if faces else []
        tracks = []
        for face, raw in zip(faces, points):
            previous = self._match(face.box)
            if previous is None:
                previous = Track(self.next_face, raw, raw, face.box, OneEuro(**self.filter_options))
                self.next_face += 1
            previous.raw, previous.box = raw, face.box
            tracks.append(previous)
        return tracks

    def _match(self, box):
        centre = np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])
        width = box[2] - box[0]
        best, distance = None, MATCH_DISTANCE * width
        for track in self.tracks:
            gap = float(np.linalg.norm(track.raw.mean(axis=0) - centre))
            if gap < distance:
                best, distance = track, gap
        if best is not None:
            self.tracks.remove(best)
        return best

    def _follow(self, frame, source):
        height, width = frame.shape[:2]
        regions = [face_box(track.raw, width, height) for track in self.tracks]
        alive = [(t, r) for t, r in zip(self.tracks, regions) if not r.fallback]
        if len(alive) < len(self.tracks):
            self.lost = True
        if not alive:
            return []
        for (track, region), raw in zip(alive, self._cascade(source, [r for _, r in alive])):
            track.raw, track.box = raw, (region.x0, region.y0, region.x1, region.y1)
        kept = [t for t, _ in alive if np.linalg.norm(t.raw[1] - t.raw[0]) * 2.5 >= self.detector.min_face]
        self.lost = self.lost or len(kept) < len(alive)
        return kept

    def step(self, frame, dt):
        """The tracks after this frame (a BGR array); dt: seconds since the previous frame."""
        source = in_memory(frame)
        if self.frame % self.every == 0 or self.lost or not self.tracks:
            self.lost = False
            self.tracks = self._detect(frame, source)
        else:
            self.tracks = self._follow(frame, source)
        for track in self.tracks:
            track.points = track.filter(track.raw, dt) if self.smooth else track.raw.copy()
        self.frame += 1
        return list(self.tracks)
