"""How steady the video points are: real still faces (a dataset's val split) made into clips that
move along a known path (still; and shift + zoom + a small roll), with noise and JPEG
re-encoding per frame, run through the same tracker as tools/video.py; prints the jitter, the
lag and the error of the raw points and of the filtered ones, side by side
(landmarks/evaluate/jitter.py says how each is measured).

  python tools/bench_jitter.py --dataset ~/data/mtfl [--faces 10] [--frames 60] [--json out.json]
"""
import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from data_prep import readers
from data_prep.dataset import DataError
from landmarks.common import checks
from landmarks.common.atomic import write_json
from landmarks.common.progress import bar as progress_bar
from landmarks.evaluate import jitter
from landmarks.runtime.backends import CaffeNet
from landmarks.runtime.inference import Cascade
from landmarks.runtime.mtcnn import MTCNN
from landmarks.runtime.tracking import DETECT_EVERY, Tracker
from workflow import runs

FACE_WIDTH = 220  # pixels: each face image is enlarged to this width in a 640x480 frame


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, metavar="ROOT", help="real faces, any layout (its val split)")
    parser.add_argument("--faces", type=int, default=10, help="faces, one clip per path each (default 10)")
    parser.add_argument("--frames", type=int, default=60, help="frames a clip (default 60, 2 s at 30 fps)")
    parser.add_argument("--every", type=int, default=DETECT_EVERY, help=f"detection every N frames (default {DETECT_EVERY})")
    parser.add_argument("--seed", type=int, default=1, help="the split's seed and the noise's (default 1)")
    parser.add_argument("--json", help="write the figures here")
    runs.add_model_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    runs.check_model_arguments(parser, args)
    if args.faces < 1 or args.frames < 10 or args.every < 1:
        parser.error("--faces and --every must be at least 1, --frames at least 10")
    return args


def _nearest(tracks, truth):
    if not tracks:
        return None
    centre = truth.mean(axis=0)
    return min(tracks, key=lambda t: np.linalg.norm(t.raw.mean(axis=0) - centre))


def measure(cascade, detector, faces, frames, every, seed, progress=None):
    """{path: {"raw": {jitter, lag, error}, "filtered": {...}, "clips", "lost_frames"}}."""
    rng = np.random.default_rng(seed)
    out = {}
    for path in jitter.PATHS:
        figures, lost = {"raw": [], "filtered": []}, 0
        for image, points in faces:
            clip, truth = jitter.clip(image, points, path, frames, rng)
            tracker = Tracker(cascade, detector, every=every)
            raw, filtered = [], []
            for frame in clip:
                track = _nearest(tracker.step(frame, 1 / 30.0), truth[len(raw)])
                raw.append(track.raw if track else np.full((5, 2), np.nan))
                filtered.append(track.points if track else np.full((5, 2), np.nan))
            raw, filtered = np.array(raw), np.array(filtered)
            missing = np.isnan(raw).any(axis=(1, 2))
            lost += int(missing.sum())
            if missing.any():  # a clip with a lost frame is counted, not measured
                continue
            for name, track in (("raw", raw), ("filtered", filtered)):
                figures[name].append((jitter.jitter(track, truth), jitter.lag(track, truth), jitter.error(track, truth)))
            if progress:
                progress()
        out[path] = {name: dict(zip(("jitter", "lag_frames", "error"), np.mean(rows, axis=0).tolist()))
                     if rows else None for name, rows in figures.items()}
        out[path].update(clips=len(figures["raw"]), lost_frames=lost)
    return out


def _lag(path, figures):
    return "-" if path == "still" else f"{figures['lag_frames']:.1f}"  # a still face has no path to trail


def format_table(result):
    lines = [f"{'path':<8} {'clips':>5} {'jitter raw':>11} {'filtered':>9} {'ratio':>6} {'lag raw':>8} {'filtered':>9} "
             f"{'error raw':>10} {'filtered':>9} {'lost':>5}"]
    for path, m in result.items():
        if not m["raw"]:
            lines.append(f"{path:<8} {0:>5}  (every clip lost a frame)")
            continue
        raw, filt = m["raw"], m["filtered"]
        lines.append(f"{path:<8} {m['clips']:>5} {100 * raw['jitter']:>10.3f}% {100 * filt['jitter']:>8.3f}% "
                     f"{raw['jitter'] / max(filt['jitter'], 1e-12):>6.1f} {_lag(path, raw):>8} {_lag(path, filt):>9} "
                     f"{100 * raw['error']:>9.2f}% {100 * filt['error']:>8.2f}% "
                     f"{m['lost_frames']:>5}")
    lines.append("jitter: frame-to-frame motion minus the true motion, over the inter-ocular distance; lag: frames "
                 "behind the true path; error: over the inter-ocular distance; lost: frames without the face.")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    problem = args.json and checks.writable_problem(Path(args.json).absolute().parent)
    if problem:
        print(f"bench_jitter: error: {problem}", file=sys.stderr)
        return 2
    try:
        data = readers.load(args.dataset, seed=args.seed)
    except DataError as exc:
        print(f"bench_jitter: error: {exc}", file=sys.stderr)
        return 2
    entries = data.split("val")[:args.faces]
    if not entries:
        print(f"bench_jitter: error: {args.dataset}: no val images", file=sys.stderr)
        return 2
    faces = []
    for entry in entries:
        image = cv2.imread(data.image_path(entry.name))
        if image is None:
            continue
        scale = FACE_WIDTH / image.shape[1]
        faces.append((cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC),
                      (np.asarray(entry.points, np.float64) + 0.5) * scale - 0.5))
    level1, level2 = runs.chosen_models(args)
    try:
        cascade = Cascade(CaffeNet(*level1), CaffeNet(*level2) if level2 else None, runs.chosen_recipe(args))
        detector = MTCNN(points="onet")
    except (FileNotFoundError, ValueError) as exc:
        print(f"bench_jitter: error: {exc}", file=sys.stderr)
        return 2
    bar = progress_bar(total=len(faces) * len(jitter.PATHS), desc="clips", unit="clip", file=sys.stderr,
                       disable=args.quiet)
    result = measure(cascade, detector, faces, args.frames, args.every, args.seed, progress=lambda: bar.update(1))
    bar.close()
    print(format_table(result))
    if args.json:
        write_json(args.json, {"paths": result, "faces": len(faces), "frames": args.frames, "every": args.every})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
