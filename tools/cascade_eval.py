"""Evaluate a two-level cascade made of any deploy prototxts and caffemodels (ours, or the
original authors' released models: ConvolutionDepthwise layers, output blob fc2) on a CelebA-
format landmark file and a folder of images, with SPEC.md's conventions.

  python tools/cascade_eval.py --l1 DEPLOY WEIGHTS --l2 DEPLOY WEIGHTS \\
      --landmarks list_landmarks_celeba.txt --images img_celeba/ [--json OUT] [--backend opencv]
  python tools/cascade_eval.py --export runs/demo/export --backend onnxruntime-int8 \\
      --landmarks list_landmarks_celeba.txt --images img_celeba/

--backend picks the runtime (landmarks.backends): caffe (default) or opencv on the Caffe
files; with --export (a tools/export.py --run folder) also onnxruntime, onnxruntime-int8, ncnn.

Prints each level's mean error and per-point errors (fractions of the image diagonal), the
failure rates, the CED area and the inter-ocular error. The landmark file may keep or drop its
two header lines. Images that are missing or cannot be decoded are skipped, named on screen and
counted in the JSON; landmark lines with unsafe names (path separators, '..') or bad fields
are refused the same way. Without --l2, level 1 alone is scored.
"""
import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_prep.celeba import DataError, read_landmarks
from landmarks.images import ImageError
from landmarks.atomic import write_json
from landmarks import backends
from landmarks.inference import Cascade
from landmarks.labels import POINT_NAMES
from landmarks.metrics import image_errors, summarise

DEFAULT_BATCH = 64  # images per forward; memory is tiny at 48x48, larger buys little on CPU
SHOWN_PROBLEMS = 20  # skipped items named on screen before the rest are only counted


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    models = parser.add_mutually_exclusive_group(required=True)
    models.add_argument("--l1", nargs=2, metavar=("DEPLOY", "WEIGHTS"), help="level-1 deploy prototxt and caffemodel")
    models.add_argument("--export", help="an export folder (tools/export.py --run): its level1/ and level2/")
    parser.add_argument("--backend", default="caffe", choices=sorted(backends.EXPORT_FILES),
                        help="runtime (default caffe); onnxruntime, onnxruntime-int8 and ncnn need --export")
    parser.add_argument("--l2", nargs=2, metavar=("DEPLOY", "WEIGHTS"), help="level-2 deploy prototxt and caffemodel")
    parser.add_argument("--landmarks", required=True, help="CelebA-format landmark file (header lines optional)")
    parser.add_argument("--images", required=True, help="folder holding the images the landmark file names")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--output-blob", help="the nets' output blob (default fc2, else the last output)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=f"images per forward (default {DEFAULT_BATCH})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.export and args.l2:
        parser.error("--l2 goes with --l1; --export holds both levels")
    if args.l1 and args.backend not in backends.BACKENDS[:2]:
        parser.error(f"--backend {args.backend} runs exported files: give --export")
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    return args


def _both_levels(cascade, paths):
    first, sizes = cascade.level1_batch(paths)
    if cascade.level2 is None:
        return [(p1, None, size, None) for p1, size in zip(first, sizes)]
    second, boxes = cascade.level2_batch(paths, first, sizes)
    return list(zip(first, second, sizes, boxes))


def predict(cascade, rows, image_dir, batch_size=DEFAULT_BATCH, progress=True, echo=print):
    """Runs the cascade over [(name, truth, line)] rows; returns (results, skipped) where a
    result is (name, truth, level1 px, level2 px or None, (w, h), box or None) and a skip is
    {name, kind, detail}. A batch with an unreadable image is redone image by image, so that
    one bad file costs only itself."""
    results, skipped = [], []
    bar = tqdm(total=len(rows), desc="cascade", unit="img", file=sys.stderr, disable=not progress)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        paths = [str(Path(image_dir) / name) for name, _, _ in chunk]
        try:
            outputs = _both_levels(cascade, paths)
        except ImageError:
            outputs = []
            for (name, _, _), path in zip(chunk, paths):
                try:
                    outputs += _both_levels(cascade, [path])
                except ImageError as exc:
                    outputs.append(None)
                    skipped.append({"name": name, "kind": exc.kind, "detail": exc.detail})
                    echo(f"skipped {name}: {exc}")
        results += [(name, truth, *out) for (name, truth, _), out in zip(chunk, outputs) if out is not None]
        bar.update(len(chunk))
    bar.close()
    return results, skipped


def score(results):
    """The JSON figures of both levels over the same images."""
    truth = np.stack([r[1] for r in results])
    widths = np.array([r[4][0] for r in results], dtype=np.float64)
    heights = np.array([r[4][1] for r in results], dtype=np.float64)
    first = np.stack([r[2] for r in results])
    out = {"level1": summarise(first, truth, widths, heights), "level2": None}
    if results[0][3] is not None:
        second = np.stack([r[3] for r in results])
        out["level2"] = summarise(second, truth, widths, heights)
        gain = image_errors(first, truth, widths, heights) - image_errors(second, truth, widths, heights)
        out["level2_better_fraction"] = float((gain > 0).mean())
        out["crop_fallbacks"] = dict(Counter(r[5].fallback for r in results if r[5].fallback))
    return out


def _pct(value):
    return f"{100 * value:6.2f}%"


def format_table(figures):
    names = " ".join(f"{n:>11}" for n in POINT_NAMES)
    lines = [f"{'model':<18} {'images':>6} {'mean':>7} {'median':>7} {names} {'>5%':>7} {'>10%':>7} {'CED AUC':>7} {'IOD':>7}"]
    for key, label in (("level1", "level 1"), ("level2", "cascade (level 2)")):
        m = figures.get(key)
        if not m:
            continue
        points = " ".join(f"{_pct(v):>11}" for v in m["per_point"])
        lines.append(f"{label:<18} {m['images']:>6} {_pct(m['mean_error'])} {_pct(m['median_error'])} {points} "
                     f"{_pct(m['failure_rate']['0.05'])} {_pct(m['failure_rate']['0.10'])} "
                     f"{m['ced_auc_0.10']:>7.3f} {_pct(m['interocular']['mean_error'])}")
    lines.append("Errors: mean point distance over the image diagonal; IOD: over the true inter-ocular distance "
                 "(images with both eyes on one pixel left out).")
    return "\n".join(lines)


def _say_problems(problems, echo):
    for problem in problems[:SHOWN_PROBLEMS]:
        echo(f"refused {problem}")
    if len(problems) > SHOWN_PROBLEMS:
        echo(f"... and {len(problems) - SHOWN_PROBLEMS} more refused lines")


def _nets(args):
    """(level 1, level 2 or None) in the chosen backend."""
    if args.export:
        second = Path(args.export) / "level2"
        return (backends.load_exported(args.backend, Path(args.export) / "level1"),
                backends.load_exported(args.backend, second) if (second / "export.json").exists() else None)
    return (backends.load(args.backend, args.l1, output=args.output_blob),
            backends.load(args.backend, args.l2, output=args.output_blob) if args.l2 else None)


def main(argv=None):
    args = parse_args(argv)
    try:
        rows, problems, header_count = read_landmarks(args.landmarks)
    except DataError as exc:
        raise SystemExit(str(exc))
    if not Path(args.images).is_dir():
        raise SystemExit(f"{args.images}: no such image folder")
    _say_problems(problems, print)
    try:
        level1, level2 = _nets(args)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(str(exc))
    results, skipped = predict(Cascade(level1, level2), rows, args.images, args.batch, not args.quiet)
    if skipped:
        print(f"{len(skipped)} image(s) skipped: " + ", ".join(f"{k} {v}" for k, v in Counter(s["kind"] for s in skipped).items()))
    if not results:
        raise SystemExit(f"no image of {args.landmarks} could be evaluated in {args.images}")
    figures = score(results)
    figures.update({
        "images": len(results),
        "skipped": {"count": len(skipped), "by_kind": dict(Counter(s["kind"] for s in skipped)), "items": skipped},
        "refused_lines": {"count": len(problems), "items": [p.as_dict() for p in problems]},
        "landmarks": str(args.landmarks), "header_count": header_count, "image_dir": str(args.images),
        "models": {"level1": list(args.l1) if args.l1 else None, "level2": list(args.l2) if args.l2 else None,
                   "export": args.export, "backend": args.backend},
    })
    print(format_table(figures))
    if figures["level2"]:
        print(f"level 2 improves {100 * figures['level2_better_fraction']:.1f}% of the images")
    if args.json:
        write_json(args.json, figures)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
