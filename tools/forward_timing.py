"""Forward latency of level 1, level 2 and the whole cascade (JPEG on disk to final points),
at batch 1 and a large batch, median and p90 after warm-up, in every inference backend
(landmarks.runtime.backends): our Caffe on the original and on the folded model (and on GPU when the
build and the machine have one), OpenCV's dnn, ONNX Runtime (float and int8) and ncnn on the
exported files; one table with the model sizes.

  python tools/forward_timing.py --run runs/demo                  # writes runs/demo/timing.json
  python tools/forward_timing.py --l1 DEPLOY WEIGHTS [--l2 DEPLOY WEIGHTS] [--json OUT]
  python tools/forward_timing.py --run runs/demo --images data/synthetic/Img/img_celeba

Without --images, a few synthetic CelebA-like JPEGs are drawn into a temporary folder.
The exported files come from --export (with --run: RUN/export/ from `make export`) when they
were made from these models, else they are exported into a temporary folder first. The JSON
holds `rows` ({what, backend, batch, median_ms, p90_ms, ...}), `model_sizes` (the original
caffemodels), `backend_sizes` ({backend: {level: bytes}}) and `skipped` ({backend: why}).
"""
import argparse
import sys
import tempfile
from pathlib import Path

from data_prep import synthetic
from landmarks.common import checks
from landmarks.common.atomic import write_json
from landmarks.common.progress import bar as progress_bar  # plain lines when not on a terminal
from landmarks.conventions.images import ImageError
from landmarks.evaluate import timing
from landmarks.runtime.model_check import check_caffe_model
from workflow import runs

IMAGE_SUFFIXES = (".jpg", ".jpeg")
SYNTHETIC_IMAGES = 8  # without --images: enough variety of image sizes for the cascade rows
SYNTHETIC_SOURCE = "synthetic (data_prep.synthetic)"
DEFAULT_MAX_IMAGES = 64  # one large batch of distinct images; more only lengthens the set-up


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    runs.add_model_arguments(parser)
    parser.add_argument("--images", help="folder of JPEGs for the cascade rows (default: synthetic ones)")
    parser.add_argument("--max-images", type=int, default=DEFAULT_MAX_IMAGES,
                        help=f"use at most this many of --images, in name order (default {DEFAULT_MAX_IMAGES})")
    parser.add_argument("--batch", type=int, default=1, help="the small batch (default 1: one image, latency)")
    parser.add_argument("--large-batch", type=int, default=timing.DEFAULT_LARGE_BATCH,
                        help=f"the large batch (default {timing.DEFAULT_LARGE_BATCH}: throughput)")
    parser.add_argument("--repeats", type=int, default=timing.DEFAULT_REPEATS,
                        help=f"timed calls per row (default {timing.DEFAULT_REPEATS})")
    parser.add_argument("--warmup", type=int, default=timing.DEFAULT_WARMUP,
                        help=f"untimed calls before them (default {timing.DEFAULT_WARMUP})")
    parser.add_argument("--backends", nargs="+", choices=timing.BACKENDS,
                        help="default: every installed one (caffe-gpu only when a GPU build sees a GPU)")
    parser.add_argument("--export", help="export folder (tools/export.py --run) to take the exported files from")
    parser.add_argument("--caffe-layers", action="store_true",
                        help="also run `caffe time` on the folded level-1 model (batch 1) and print where the time goes")
    parser.add_argument("--json", help="write the result here (default with --run: RUN/timing.json)")
    args = parser.parse_args(argv)
    runs.check_model_arguments(parser, args)
    for name in ("batch", "large_batch", "repeats", "max_images"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    return args


def _images(folder, limit):
    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"{folder}: no such folder")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not paths:
        raise SystemExit(f"{folder}: no JPEG images")
    return [str(p) for p in paths]


def _caffe_layers(level1, export_dir):
    """caffe time on the folded level-1 model (ours, with our depthwise layer), from the export
    folder when it matches, else folded into a temporary folder."""
    import tempfile

    from landmarks.deploy.export import FOLDED, OURS
    from landmarks.deploy.fold import fold_model

    if timing._matching_export(export_dir, "level1", level1):
        folder = Path(export_dir) / "level1"
        return timing.caffe_layer_times(folder / OURS, folder / FOLDED[1])
    with tempfile.TemporaryDirectory() as tmp:
        fold_model(*level1, Path(tmp) / FOLDED[0], Path(tmp) / FOLDED[1], ours_out=Path(tmp) / OURS)
        return timing.caffe_layer_times(Path(tmp) / OURS, Path(tmp) / FOLDED[1])


def main(argv=None):
    args = parse_args(argv)
    level1, level2 = runs.chosen_models(args)
    out = args.json
    if args.run:
        if level2 is None:
            print(f"{args.run}: no level2/train.json yet: timing level 1 alone")
        out = out or str(Path(args.run) / "timing.json")
    problem = out and checks.writable_problem(Path(out).absolute().parent)
    if problem:  # said before the timing, not after it
        print(f"forward_timing: error: {problem}", file=sys.stderr)
        return 2
    try:  # the model files, before any timing starts: one line, not a bar cut short
        for model in filter(None, (level1, level2)):
            check_caffe_model(*model)
    except FileNotFoundError as exc:
        print(f"forward_timing: error: {exc}", file=sys.stderr)
        return 2
    export_dir = args.export or (str(Path(args.run) / "export") if args.run else None)
    images, source = (_images(args.images, args.max_images), "given") if args.images else (None, SYNTHETIC_SOURCE)
    backends = args.backends or timing.default_backends()
    per_backend = (2 if level2 else 1) + 1
    bar = progress_bar(total=len(backends) * len({args.batch, args.large_batch}) * per_backend, desc="timing", unit="row", file=sys.stderr)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            images = images or synthetic.write_samples(Path(tmp) / "images", SYNTHETIC_IMAGES)
            result = timing.time_models(level1, level2, images, repeats=args.repeats, warmup=args.warmup,
                                        batch=args.batch, large_batch=args.large_batch, backends=backends,
                                        progress=lambda row: bar.update(1), export_dir=export_dir,
                                        recipe=runs.chosen_recipe(args), image_source=source)
    except (FileNotFoundError, ValueError, ImageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    print(timing.format_table(result))
    if args.caffe_layers:
        result["caffe_layers"] = _caffe_layers(level1, export_dir)
        print(timing.format_layer_times(result["caffe_layers"]))
    if out:
        write_json(out, result)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
