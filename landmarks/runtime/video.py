"""Owns landmarking a video (tools/video.py): reading frames from a file OpenCV reads or a camera,
with one clear `VideoError` for what cannot be used (not a video, no frames, frames that change
size, no such camera); the frame loop through landmarks.runtime.tracking with a progress bar in
frames per second; the drawn video and the CSV of points, each written under a temporary name and
renamed only when the whole video is done (an interrupted or refused run leaves neither); and the
per-frame cost of each part (detection, cascade, drawing) for `--benchmark`.

CSV (a header line, then one row per face per frame):
    frame,time_s,face,left,top,right,bottom,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5
`face` numbers a track (the same face keeps its number while it is followed); the box is the
detector's on detection frames, else the region level 1 looked at; the points are the filtered
ones (the cascade's own with the filter off), original-frame pixels, CelebA's point order.
"""
import csv
import io
import os
import time
from pathlib import Path

import cv2
import numpy as np

from landmarks.common.atomic import write_text
from landmarks.conventions.crop import CropBox
from landmarks.conventions.draw import COLOURS, draw_box, draw_points

CSV_HEADER = ["frame", "time_s", "face", "left", "top", "right", "bottom"] + [f"{a}{i}" for i in range(1, 6)
                                                                             for a in "xy"]
DEFAULT_FPS = 30.0  # when the container does not say


class VideoError(ValueError):
    """A video (or camera) that cannot be used; the message names it and says why."""


class Frames:
    """The frames of a video file or a camera, in order, each checked to have the first one's size."""

    def __init__(self, source, camera=False):
        self.name = f"camera {source}" if camera else str(source)
        if not camera and "%" not in str(source) and not Path(source).is_file():  # f%03d.png: a sequence
            raise VideoError(f"{source}: no such file")
        self.capture = cv2.VideoCapture(int(source) if camera else str(source))
        if not self.capture.isOpened():
            raise VideoError(f"{self.name}: " + ("no such camera" if camera else "not a video OpenCV can read"))
        ok, first = self.capture.read()
        if not ok or first is None:
            self.capture.release()
            raise VideoError(f"{self.name}: no frames (an empty or zero-length video)")
        self.first = first
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.count = count if count > 0 and not camera else None
        self.size = (first.shape[1], first.shape[0])

    def __iter__(self):
        index, frame = 0, self.first
        while frame is not None:
            if (frame.shape[1], frame.shape[0]) != self.size:
                raise VideoError(f"{self.name}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                                 f"the first was {self.size[0]}x{self.size[1]}")
            yield index, frame
            index += 1
            ok, frame = self.capture.read()
            frame = frame if ok else None

    def close(self):
        self.capture.release()


class VideoOut:
    """The drawn video, written to a temporary name beside `path` and renamed by `finish`."""

    def __init__(self, path, fps, size):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{os.getpid()}{self.path.suffix or '.mp4'}")
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            self.discard()
            raise VideoError(f"{self.path}: OpenCV cannot write a video there (its folder, or the suffix: use .mp4)")

    def write(self, frame):
        self.writer.write(frame)

    def finish(self):
        self.writer.release()
        if not self.tmp.is_file() or self.tmp.stat().st_size == 0:
            self.discard()
            raise OSError(f"{self.path}: the video could not be written")
        os.replace(self.tmp, self.path)

    def discard(self):
        self.writer.release()
        self.tmp.unlink(missing_ok=True)


def draw_tracks(frame, tracks):
    """The frame with each face's box (yellow) and its points (blue) drawn, in place."""
    for track in tracks:
        left, top, right, bottom = (int(round(v)) for v in track.box)
        draw_box(frame, CropBox(left, top, right, bottom), (0, 255, 255))
        draw_points(frame, track.points, COLOURS["level2"])
    return frame


def csv_rows(index, time_s, tracks):
    return [[index, f"{time_s:.4f}", t.face, *(f"{v:.2f}" for v in t.box), *(f"{v:.3f}" for v in t.points.reshape(-1))]
            for t in tracks]


def csv_text(rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(rows)
    return out.getvalue()


def run(frames, tracker, out=None, csv_path=None, max_frames=0, progress=None, timings=None):
    """Every frame through the tracker; the drawn video to `out` and the CSV to `csv_path`, each only
    when the whole video went through. progress: called once per frame; timings: a dict that gets
    seconds per part ({"track", "draw", "write"}). Returns (frames, faces seen on them)."""
    writer = VideoOut(out, frames.fps, frames.size) if out else None
    rows, count, faces, dt = [], 0, 0, 1.0 / frames.fps
    timings = timings if timings is not None else {}
    try:
        for index, frame in frames:
            if max_frames and index >= max_frames:
                break
            started = time.perf_counter()
            tracks = tracker.step(frame, dt)
            tracked = time.perf_counter()
            if writer:
                writer.write(draw_tracks(frame, tracks))
            drawn = time.perf_counter()
            rows += csv_rows(index, index * dt, tracks)
            timings["track"] = timings.get("track", 0.0) + tracked - started
            timings["draw"] = timings.get("draw", 0.0) + drawn - tracked
            count, faces = count + 1, faces + len(tracks)
            if progress:
                progress()
    except BaseException:
        if writer:
            writer.discard()
        raise
    if writer:
        writer.finish()
    if csv_path:
        write_text(csv_path, csv_text(rows))
    return count, faces
