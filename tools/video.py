"""Landmark every face of a video: MTCNN (models/mtcnn/) finds the faces every --every frames or
when one is lost, the cascade follows them from their previous points on the frames between, and
a One-Euro filter steadies the points (--no-filter: the cascade's own). Writes the drawn video
and a CSV of the points; --benchmark prints the per-frame cost of each part instead.

  python tools/video.py clip.mp4 --out drawn.mp4 --csv points.csv
  python tools/video.py --camera 0 --out drawn.mp4 --max-frames 300
  python tools/video.py clip.mp4 --benchmark                 # our Caffe, OpenCV and ONNX Runtime side by side

--backend onnxruntime runs MTCNN's nets and the cascade's converted to ONNX (MTCNN's once, into
build/mtcnn-onnx/, checked against Caffe; the cascade's folded into a temporary folder at start).

CSV: `frame,time_s,face,left,top,right,bottom,x1,y1,...,x5,y5`, one row per face per frame
(landmarks/runtime/video.py). A file that is not a video, a video without frames or whose frames
change size, or a camera that is not there: one line, exit 2, and no output left behind.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# FFmpeg's own complaints about a file that is not a video (read when OpenCV first opens one):
# our one line says it instead.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

from landmarks.common import checks
from landmarks.common.progress import bar as progress_bar
from landmarks.deploy.export import onnx_net
from landmarks.deploy.mtcnn_onnx import detector as open_detector
from landmarks.runtime import backends
from landmarks.runtime.inference import Cascade
from landmarks.runtime.mtcnn import CELL, MIN_FACE
from landmarks.runtime.tracking import DETECT_EVERY, Tracker
from landmarks.runtime.video import Frames, VideoError, draw_tracks, run
from workflow import runs

BENCHMARK_FRAMES = 100
BENCHMARK_BACKENDS = ("caffe", "opencv", "onnxruntime")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", nargs="?", help="a video file OpenCV reads")
    parser.add_argument("--camera", type=int, metavar="INDEX", help="read camera INDEX instead of a file")
    parser.add_argument("--out", help="the drawn video (.mp4)")
    parser.add_argument("--csv", help="the points, one row per face per frame")
    parser.add_argument("--every", type=int, default=DETECT_EVERY,
                        help=f"detect faces every N frames (default {DETECT_EVERY}); between, the cascade follows them")
    parser.add_argument("--no-filter", action="store_true", help="the cascade's points as they are, unfiltered")
    parser.add_argument("--min-face", type=int, default=MIN_FACE, help=f"smallest face, pixels (default {MIN_FACE})")
    parser.add_argument("--max-faces", type=int, default=0, help="follow at most this many faces (default 0: all)")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (default 0: all)")
    parser.add_argument("--backend", choices=BENCHMARK_BACKENDS, default="caffe",
                        help="runtime of the detector and the cascade (default caffe: our build)")
    parser.add_argument("--benchmark", action="store_true",
                        help=f"time detection, cascade and drawing per frame on the first {BENCHMARK_FRAMES} frames, "
                        f"for {' and '.join(BENCHMARK_BACKENDS)}; writes nothing")
    runs.add_model_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    runs.check_model_arguments(parser, args)
    if (args.video is None) == (args.camera is None):
        parser.error("give a video file or --camera INDEX (one of them)")
    if not args.benchmark and not (args.out or args.csv):
        parser.error("name an output: --out VIDEO.mp4 and/or --csv POINTS.csv (or --benchmark)")
    for name in ("every", "min_face", "max_faces", "max_frames"):
        if getattr(args, name) < (1 if name == "every" else CELL if name == "min_face" else 0):
            parser.error(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}")
    return args


def _level(backend, files):
    """One cascade level in `backend` (onnxruntime: the caffemodel folded and converted first)."""
    if files is None:
        return None
    if backend != "onnxruntime":
        return backends.load(backend, files)
    with tempfile.TemporaryDirectory(prefix="video-onnx-") as tmp:  # the session keeps the model in memory
        return backends.load(backend, [onnx_net(*files, tmp)])


def _tracker(args, backend, level1, level2):
    cascade = Cascade(_level(backend, level1), _level(backend, level2), runs.chosen_recipe(args))
    detector = open_detector(backend, min_face=args.min_face, points="onet")
    return Tracker(cascade, detector, every=args.every, smooth=not args.no_filter, max_faces=args.max_faces)


def _benchmark(args, level1, level2):
    """Per-frame milliseconds of detection (amortised over --every), cascade and drawing."""
    lines = [f"{'backend':<11} {'frames':>6} {'detection':>10} {'cascade':>9} {'drawing':>9} {'total':>9} {'fps':>7}"]
    for backend in BENCHMARK_BACKENDS:
        tracker = _tracker(args, backend, level1, level2)
        detect, spent = tracker.detector.detect, {"detect": 0.0}

        def timed(*a, **k):
            start = time.perf_counter()
            try:
                return detect(*a, **k)
            finally:
                spent["detect"] += time.perf_counter() - start

        tracker.detector.detect = timed
        frames = Frames(args.video if args.camera is None else args.camera, camera=args.camera is not None)
        timings, drawing, count = {}, 0.0, 0
        try:
            for index, frame in frames:
                if index >= (args.max_frames or BENCHMARK_FRAMES):
                    break
                started = time.perf_counter()
                tracks = tracker.step(frame, 1.0 / frames.fps)
                timings["track"] = timings.get("track", 0.0) + time.perf_counter() - started
                started = time.perf_counter()
                draw_tracks(frame.copy(), tracks)
                drawing += time.perf_counter() - started
                count += 1
        finally:
            frames.close()
        per = lambda seconds: 1000.0 * seconds / max(1, count)  # noqa: E731
        total = per(timings.get("track", 0.0) + drawing)
        lines.append(f"{backend:<11} {count:>6} {per(spent['detect']):>8.2f}ms {per(timings['track'] - spent['detect']):>7.2f}ms "
                     f"{per(drawing):>7.2f}ms {total:>7.2f}ms {1000.0 / total if total else 0:>7.1f}")
    lines.append(f"Per frame, {frames.size[0]}x{frames.size[1]}, detection every {args.every} frames (its cost spread "
                 "over them), the cascade from the previous points between; video decoding not counted.")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    for output in filter(None, (args.out, args.csv)):
        problem = (f"{output}: is a folder; name a file" if Path(output).is_dir()
                   else checks.writable_problem(Path(output).absolute().parent))
        if problem:  # said before any frame is read
            print(f"video: error: {problem}", file=sys.stderr)
            return 2
    level1, level2 = runs.chosen_models(args)
    try:
        if args.benchmark:
            print(_benchmark(args, level1, level2))
            return 0
        tracker = _tracker(args, args.backend, level1, level2)
        frames = Frames(args.video if args.camera is None else args.camera, camera=args.camera is not None)
    except (VideoError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"video: error: {exc}", file=sys.stderr)
        return 2
    total = min(frames.count, args.max_frames) if frames.count and args.max_frames else (frames.count or args.max_frames
                                                                                          or None)
    bar = progress_bar(total=total, desc="video", unit="frame", file=sys.stderr, disable=args.quiet)
    try:
        count, faces = run(frames, tracker, args.out, args.csv, args.max_frames, progress=lambda: bar.update(1))
    except VideoError as exc:
        bar.close()
        print(f"video: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        bar.close()
        print(f"video: error: {checks.disk_message(exc, args.out or args.csv)}", file=sys.stderr)
        return 2
    finally:
        frames.close()
    bar.close()
    print(f"{count} frame(s), {faces} face(s) landmarked, {tracker.detections} detection(s)"
          + "".join(f"; wrote {path}" for path in (args.out, args.csv) if path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
