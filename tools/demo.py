"""Draw the cascade on any image, in the article's colours: ground truth green (when
--landmarks knows the image), level 1 red, level 2 blue, and the crop level 2 saw (yellow).

  python tools/demo.py photo.jpg                                    # the shipped models (models/mtfl/)
  python tools/demo.py photo.jpg other.jpg --run runs/demo          # writes runs/demo/demo/*_cascade.jpg
  python tools/demo.py IMG ... --l1 DEPLOY WEIGHTS --l2 DEPLOY WEIGHTS [--landmarks FILE] [--out DIR]

Writes <out>/<stem>_cascade.jpg per image (<stem>-2_cascade.jpg, ... for images of one name) and prints the points in original-image pixels
(and each level's error when the truth is known).
"""
import argparse
import sys
from pathlib import Path

import cv2

from data_prep.celeba import DataError, read_landmarks
from landmarks.common import checks
from landmarks.conventions.draw import annotate
from landmarks.conventions.images import ImageError, read_bgr
from landmarks.conventions.labels import POINT_NAMES
from landmarks.conventions.metrics import image_errors
from landmarks.runtime import backends, starts
from landmarks.runtime.inference import Cascade
from landmarks.runtime.mtcnn import MTCNN
from workflow import runs

DEFAULT_OUT = "cascade_demo"  # without --run; with it, RUN/demo
JPEG_QUALITY = 95  # high enough that the drawn colours survive chroma subsampling


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    runs.add_model_arguments(parser)
    parser.add_argument("--landmarks", help="CelebA-format landmark file: draws the truth of the images it names")
    parser.add_argument("--out", help=f"output folder (default RUN/demo with --run, else {DEFAULT_OUT})")
    parser.add_argument("--output-blob", help="the nets' output blob (default fc2, else the last output)")
    parser.add_argument("--boxes", default="auto", choices=("auto", "none", "mtcnn"),
                        help="where the cascade starts: none (the whole image), mtcnn (the face MTCNN is surest of); "
                        "auto (default): mtcnn (landmarks.runtime.starts)")
    parser.add_argument("--backend", default="caffe", choices=("caffe", "opencv"),
                        help="runtime for the Caffe files (landmarks.runtime.backends; default caffe)")
    args = parser.parse_args(argv)
    runs.check_model_arguments(parser, args)
    return args


def _format_points(points):
    return "  ".join(f"{n} ({x:.1f}, {y:.1f})" for n, (x, y) in zip(POINT_NAMES, points))


def output_names(paths):
    """One output name per image: <stem>_cascade.jpg, numbered from the second image of a stem
    on (a/x.jpg and b/x.jpg must not write one file)."""
    seen, names = {}, []
    for path in paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}_cascade.jpg" if seen[stem] == 1 else f"{stem}-{seen[stem]}_cascade.jpg")
    return names


def draw_one(cascade, path, truth, out_dir, name=None, start=None):
    """Runs the cascade on one image (from `start`, a region around its face, or the whole image)
    and writes the drawing; returns (output path, result)."""
    result = cascade.run(str(path), start)
    image = read_bgr(str(path)).image
    drawn = annotate(image, truth=truth, level1=result.level1, level2=result.level2, box=result.box)
    out = Path(out_dir) / (name or f"{Path(path).stem}_cascade.jpg")
    if not cv2.imwrite(str(out), drawn, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError(f"{out}: could not write")
    return out, result


def main(argv=None):
    args = parse_args(argv)
    level1, level2 = runs.chosen_models(args)
    out_dir = Path(args.out or (Path(args.run) / "demo" if args.run else DEFAULT_OUT))
    problem = checks.writable_problem(out_dir)  # before the nets are loaded, not after
    if problem:
        print(f"demo: error: {problem}", file=sys.stderr)
        return 2
    truths = {}
    if args.landmarks:
        try:
            rows, problems, _ = read_landmarks(args.landmarks)
        except DataError as exc:
            raise SystemExit(str(exc))
        truths = {name: points for name, points, _ in rows}
    try:
        cascade = Cascade(backends.load(args.backend, level1, output=args.output_blob),
                          backends.load(args.backend, level2, output=args.output_blob) if level2 else None,
                          runs.chosen_recipe(args))
        source = starts.resolve(args.boxes, False)
        detector = MTCNN(backend=args.backend, points="onet") if source == "mtcnn" else None
    except (FileNotFoundError, ValueError) as exc:  # a missing model file, or one pycaffe would abort on (model_check)
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path, name in zip(args.images, output_names(args.images)):
        truth = truths.get(Path(path).name)
        try:
            start = starts.start_boxes(source, [str(path)], None, detector)[0]
            out, result = draw_one(cascade, path, truth, out_dir, name, start)
        except ImageError as exc:
            print(f"skipped {exc}")
            failed += 1
            continue
        width, height = result.size
        print(f"{path} ({width}x{height}) -> {out}")
        print("  start:   " + ("the whole image" if start is None else
                               f"x {start.x0}..{start.x1}, y {start.y0}..{start.y1} (around MTCNN's face box)"))
        print(f"  level 1: {_format_points(result.level1)}")
        if result.level2 is not None:
            box = result.box
            print(f"  crop:    x {box.x0}..{box.x1}, y {box.y0}..{box.y1}" + (f" ({box.fallback})" if box.fallback else ""))
            print(f"  level 2: {_format_points(result.level2)}")
        if truth is not None:
            print(f"  truth:   {_format_points(truth)}")
            errors = [(name, image_errors(points[None], truth[None], [width], [height])[0])
                      for name, points in (("level 1", result.level1), ("level 2", result.level2)) if points is not None]
            print("  error:   " + ", ".join(f"{name} {100 * e:.2f}% of the diagonal" for name, e in errors))
        elif args.landmarks:
            print(f"  truth:   {Path(path).name} is not in {args.landmarks}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
