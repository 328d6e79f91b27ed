"""Evaluate a two-level cascade made of any deploy prototxts and caffemodels (ours, or the
original authors' released models: ConvolutionDepthwise layers, output blob fc2) with SPEC.md's
conventions, on a dataset root of any layout or on a CelebA-format landmark file.

  python tools/cascade_eval.py --dataset ROOT [--subset test] [--json OUT]      # shipped models
  python tools/cascade_eval.py --l1 DEPLOY WEIGHTS --l2 DEPLOY WEIGHTS \\
      --landmarks list_landmarks_celeba.txt --images img_celeba/ [--json OUT] [--backend opencv]
  python tools/cascade_eval.py --run runs/main --dataset ROOT --predictions cascade.txt
  python tools/cascade_eval.py --export runs/demo/export --backend onnxruntime-int8 --dataset ROOT
  python tools/cascade_eval.py --dataset ROOT --subset val --baseline mtcnn   # MTCNN beside ours

--backend picks the runtime (landmarks.runtime.backends): caffe (default) or opencv on the Caffe
files; with --export (a tools/export.py --run folder) also onnxruntime, onnxruntime-int8, ncnn.

Prints each level's mean error and per-point errors over the image diagonal, the failure
rates and CED area, side by side with the mean error over the inter-ocular distance (and its
failure rate at 10%) and, where the dataset gives face boxes (Sun et al.'s lists), over the
box width. --baseline mtcnn adds MTCNN's points (models/mtcnn/: v1's O-Net and v2's L-Net,
from its own detection and, where the dataset gives boxes, from the given box) on the same
images, in the same normalisations, with how many faces its detection missed. --predictions writes one line per scored image, `name x1 y1 ... x5 y5` in
original-image pixels (level 2 when given, else level 1); --level1-predictions the same for
level 1. Images that are missing or cannot be decoded are skipped, named on screen and
counted in the JSON; list lines with unsafe names or bad fields are refused the same way.
"""
import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from data_prep import dataset as datasets
from data_prep import readers
from data_prep.celeba import read_landmarks
from data_prep.dataset import DataError
from data_prep.predictions import write_predictions
from landmarks.common import checks
from landmarks.common.atomic import write_json
from landmarks.common.progress import bar as progress_bar
from landmarks.conventions.images import ImageError
from landmarks.conventions.labels import POINT_NAMES
from landmarks.conventions.metrics import by_turn, image_errors, summarise
from landmarks.deploy.mtcnn_onnx import detector as open_detector
from landmarks.deploy.mtcnn_onnx import detector_backend
from landmarks.evaluate import baseline
from landmarks.runtime import backends
from landmarks.runtime import starts as starts_
from landmarks.runtime.inference import ARTICLE, Cascade
from workflow import runs

DEFAULT_BATCH = 64  # images per forward; memory is tiny at 48x48, larger buys little on CPU
SHOWN_PROBLEMS = 20  # skipped items named on screen before the rest are only counted
SUBSETS = ("all", "train", "val", "test")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    runs.add_model_arguments(parser)
    parser.add_argument("--export", help="an export folder (tools/export.py --run): its level1/ and level2/")
    parser.add_argument("--backend", default="caffe", choices=sorted(backends.EXPORT_FILES),
                        help="runtime (default caffe); onnxruntime, onnxruntime-int8 and ncnn need --export")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", metavar="ROOT",
                        help="a dataset root: CelebA as distributed, MTFL (training.txt) or Sun et al.'s lists")
    source.add_argument("--landmarks", help="CelebA-format landmark file (header lines optional); with --images")
    parser.add_argument("--images", help="--landmarks: the folder holding the images it names")
    parser.add_argument("--dataset-format", type=readers.format_choice, default="auto",
                        help="--dataset: celeba | mtfl | sun (default auto: detected from the files present)")
    parser.add_argument("--variant", choices=("wild", "align"), default="wild", help="--dataset, CelebA: images")
    parser.add_argument("--split", choices=datasets.SPLIT_CHOICES, default="official",
                        help="--dataset: how the splits are made, as in data prep (default official)")
    parser.add_argument("--seed", type=int, default=1, help="--dataset: the seed of carved splits (default 1, "
                        "the workflow's)")
    parser.add_argument("--subset", choices=SUBSETS, default="all", help="--dataset: which split to score (default all)")
    parser.add_argument("--boxes", choices=starts_.BOX_SOURCES, default="auto",
                        help="where the cascade starts: none (the whole image, the article's), dataset (its face "
                        "boxes), mtcnn (the face MTCNN is surest of); auto (default): the dataset's boxes where it "
                        f"gives them, else {starts_.AUTO_WITHOUT_BOXES}")
    parser.add_argument("--baseline", choices=("none", "mtcnn"), default="none",
                        help="also score MTCNN on the same images (default none)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--predictions", metavar="FILE",
                        help="write `name x1 y1 ... x5 y5` per scored image, original pixels (level 2 when given)")
    parser.add_argument("--level1-predictions", metavar="FILE", help="the same for level 1")
    parser.add_argument("--output-blob", help="the nets' output blob (default fc2, else the last output)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=f"images per forward (default {DEFAULT_BATCH})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    runs.check_model_arguments(parser, args)
    if args.export and (args.run or args.l1 or args.l2):
        parser.error("--export holds both levels: give it alone, without --run, --l1 or --l2")
    if not args.export and args.backend not in backends.BACKENDS[:2]:
        parser.error(f"--backend {args.backend} runs exported files: give --export")
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    if args.landmarks and not args.images:
        parser.error("--landmarks needs --images")
    return args


def _both_levels(cascade, paths, starts=None):
    first, sizes = cascade.level1_batch(paths, starts)
    if cascade.level2 is None:
        return [(p1, None, size, None) for p1, size in zip(first, sizes)]
    second, boxes = cascade.level2_batch(paths, first, sizes)
    return list(zip(first, second, sizes, boxes))


def predict(cascade, rows, batch_size=DEFAULT_BATCH, progress=True, echo=print, starts=None):
    """Runs the cascade over [(name, path, truth, face box or None)] rows, each started where
    `starts` says (landmarks.runtime.starts; None: the whole image); returns (results,
    skipped) where a result is (name, truth, level1 px, level2 px or None, (w, h), crop box or
    None, face box or None) and a skip is {name, kind, detail}. A batch with an unreadable
    image is redone image by image, so that one bad file costs only itself."""
    results, skipped = [], []
    bar = progress_bar(total=len(rows), desc="cascade", unit="img", file=sys.stderr, disable=not progress)
    starts = starts or [None] * len(rows)
    for start in range(0, len(rows), batch_size):
        chunk, chunk_starts = rows[start:start + batch_size], starts[start:start + batch_size]
        paths = [path for _, path, _, _ in chunk]
        try:
            outputs = _both_levels(cascade, paths, chunk_starts)
        except ImageError:
            outputs = []
            for (name, path, _, _), first_look in zip(chunk, chunk_starts):
                try:
                    outputs += _both_levels(cascade, [path], [first_look])
                except ImageError as exc:
                    outputs.append(None)
                    skipped.append({"name": name, "kind": exc.kind, "detail": exc.detail})
                    echo(f"skipped {name}: {exc}")
        results += [(name, truth, *out, face) for (name, _, truth, face), out in zip(chunk, outputs) if out is not None]
        bar.update(len(chunk))
    bar.close()
    return results, skipped


def figures_boxes(results):
    """(N, 4) face boxes of the scored images when the dataset gives every one, else None."""
    return np.array([r[6] for r in results], dtype=np.float64) if all(r[6] is not None for r in results) else None


def score(results):
    """The JSON figures of both levels over the same images."""
    truth = np.stack([r[1] for r in results])
    widths = np.array([r[4][0] for r in results], dtype=np.float64)
    heights = np.array([r[4][1] for r in results], dtype=np.float64)
    boxes = figures_boxes(results)
    first = np.stack([r[2] for r in results])
    out = {"level1": summarise(first, truth, widths, heights, boxes), "level2": None}
    if results[0][3] is not None:
        second = np.stack([r[3] for r in results])
        out["level2"] = summarise(second, truth, widths, heights, boxes)
        gain = image_errors(first, truth, widths, heights) - image_errors(second, truth, widths, heights)
        out["level2_better_fraction"] = float((gain > 0).mean())
        out["crop_fallbacks"] = dict(Counter(r[5].fallback for r in results if r[5].fallback))
    out["by_turn"] = by_turn(second if out["level2"] else first, truth)
    return out


def _pct(value):
    return f"{100 * value:6.2f}%" if value is not None and value == value else f"{'-':>7}"


def baseline_figures(results, paths, boxes, backend, progress=True):
    """{key: {"label", "missed", "ours_same_images", **summarise}} of MTCNN on the scored images."""
    truth = np.stack([r[1] for r in results])
    widths = np.array([r[4][0] for r in results], dtype=np.float64)
    heights = np.array([r[4][1] for r in results], dtype=np.float64)
    ours = np.stack([r[3] if r[3] is not None else r[2] for r in results])
    bar = progress_bar(total=len(results), desc="mtcnn", unit="img", file=sys.stderr, disable=not progress)
    rows = baseline.mtcnn_rows(paths, truth, boxes, backend=backend,
                               progress=lambda: bar.update(1))
    bar.close()
    out = {}
    for row in rows:
        found = row.found
        if not found.any():
            out[row.key] = {"label": row.label, "missed": int(len(found)), "images": 0}
            continue
        pick = lambda a: a[found] if a is not None else None  # noqa: E731
        out[row.key] = {"label": row.label, "missed": int((~found).sum()),
                        "by_turn": by_turn(row.points[found], truth[found]),
                        **summarise(row.points[found], truth[found], widths[found], heights[found], pick(boxes)),
                        "ours_same_images": summarise(ours[found], truth[found], widths[found], heights[found],
                                                      pick(boxes))["interocular"]["mean_error"]}
    return out


def _table_line(label, m):
    names = " ".join(f"{_pct(v):>11}" for v in m["per_point"])
    iod, box = m["interocular"], m.get("box") or {}
    return (f"{label:<34} {m['images']:>6} {_pct(m['mean_error'])} {_pct(m['median_error'])} {names} "
            f"{_pct(m['failure_rate']['0.05'])} {_pct(m['failure_rate']['0.10'])} "
            f"{m['ced_auc_0.10']:>7.3f} {_pct(iod['mean_error'])} {_pct(iod['failure_rate_0.10'])} "
            f"{_pct(box.get('mean_error'))} {_pct(box.get('failure_rate_0.10'))}")


def format_table(figures):
    names = " ".join(f"{n:>11}" for n in POINT_NAMES)
    lines = [f"{'model':<34} {'images':>6} {'mean':>7} {'median':>7} {names} {'>5%':>7} {'>10%':>7} {'CED AUC':>7} "
             f"{'IOD':>7} {'IOD>10%':>7} {'box':>7} {'box>10%':>7}"]
    for key, label in (("level1", "level 1"), ("level2", "cascade (level 2)")):
        m = figures.get(key)
        if not m:
            continue
        lines.append(_table_line(label, m))
    notes = []
    for m in (figures.get("baselines") or {}).values():
        if not m["images"]:
            lines.append(f"{m['label']:<34} {0:>6}  (found none of the faces)")
            continue
        lines.append(_table_line(m["label"], m))
        if m["missed"]:
            notes.append(f"{m['label']}: missed {m['missed']} face(s), left out of its row; ours on the same "
                         f"{m['images']} images: IOD {_pct(m['ours_same_images']).strip()}")
    lines += notes
    lines += _turn_lines(figures)
    lines.append("Errors: mean point distance over the image diagonal (mean, median, per point, >5%, >10%, CED); "
                 "IOD: over the true inter-ocular distance (images with both eyes on one pixel left out); "
                 "box: over the face box's width (only where the dataset gives boxes).")
    return "\n".join(lines)


def _turn_lines(figures):
    """The inter-ocular error by head turn (metrics.by_turn) of the cascade and each baseline."""
    rows = [("ours, " + ("cascade" if figures.get("level2") else "level 1"), figures.get("by_turn"))]
    rows += [(m["label"], m.get("by_turn")) for m in (figures.get("baselines") or {}).values()]
    rows = [(label, bins) for label, bins in rows if bins]
    if not rows:
        return []
    names = [b["bin"] for b in rows[0][1]]
    lines = [f"{'IOD error by head turn':<34} " + " ".join(f"{n:>9}" for n in names),
             f"{'  images (ours)':<34} " + " ".join(f"{b['images']:>9}" for b in rows[0][1])]
    for label, bins in rows:
        lines.append(f"{label:<34} " + " ".join(f"{_pct(b['interocular']):>9}" for b in bins))
    return lines


def _say_problems(problems, echo):
    for problem in problems[:SHOWN_PROBLEMS]:
        echo(f"refused {problem}")
    if len(problems) > SHOWN_PROBLEMS:
        echo(f"... and {len(problems) - SHOWN_PROBLEMS} more refused lines")


def read_rows(args):
    """([(name, path, truth, face box or None)], refused-line problems, facts for the JSON)."""
    if args.landmarks:
        rows, problems, header_count = read_landmarks(args.landmarks)
        if not Path(args.images).is_dir():
            raise DataError(f"{args.images}: no such image folder")
        return ([(name, str(Path(args.images) / name), points, None) for name, points, _ in rows], problems,
                {"landmarks": str(args.landmarks), "header_count": header_count, "image_dir": str(args.images)})
    data = readers.load(args.dataset, args.dataset_format, args.variant, args.split, seed=args.seed)
    entries = data.entries if args.subset == "all" else data.split(args.subset)
    if not entries:
        raise DataError(f"{args.dataset}: no {args.subset} images")
    return ([(e.name, data.image_path(e.name), e.points, e.box) for e in entries], data.problems,
            {"dataset": data.root, "dataset_format": data.format, "subset": args.subset, "split": data.split_record,
             "image_dir": data.image_dir})


def _nets(args, level1_files, level2_files):
    """(level 1, level 2 or None) in the chosen backend."""
    if args.export:
        second = Path(args.export) / "level2"
        return (backends.load_exported(args.backend, Path(args.export) / "level1"),
                backends.load_exported(args.backend, second) if (second / "export.json").exists() else None)
    return (backends.load(args.backend, level1_files, output=args.output_blob),
            backends.load(args.backend, level2_files, output=args.output_blob) if level2_files else None)


def main(argv=None):
    args = parse_args(argv)
    try:
        rows, problems, facts = read_rows(args)
    except DataError as exc:
        print(f"cascade_eval: error: {exc}", file=sys.stderr)
        return 2
    problem = args.json and checks.writable_problem(Path(args.json).absolute().parent)
    if problem:  # said before the evaluation, not after it
        print(f"cascade_eval: error: {problem}", file=sys.stderr)
        return 2
    level1_files, level2_files = (None, None) if args.export else runs.chosen_models(args)
    _say_problems(problems, print)
    try:
        level1, level2 = _nets(args, level1_files, level2_files)
    except (FileNotFoundError, ValueError) as exc:  # a missing model file, or one pycaffe would abort on (model_check)
        print(f"cascade_eval: error: {exc}", file=sys.stderr)
        return 2
    # an export folder says nothing of the schedule: the article's recipe unless --recipe names one
    recipe = ARTICLE if args.export and args.recipe == "auto" else runs.chosen_recipe(args)
    print(f"recipe: {recipe.describe()}")
    try:
        source = starts_.resolve(args.boxes, all(box is not None for _, _, _, box in rows))
        detector = open_detector(detector_backend(args.backend), points="onet") if source == "mtcnn" else None
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"cascade_eval: error: {exc}", file=sys.stderr)
        return 2
    bar = progress_bar(total=len(rows), desc="face boxes", unit="img", file=sys.stderr,
                       disable=args.quiet or source in ("none", "dataset"))
    starts = starts_.start_boxes(source, [path for _, path, _, _ in rows],
                                 [box for _, _, _, box in rows] if source == "dataset" else None, detector,
                                 progress=lambda: bar.update(1))
    bar.close()
    print(f"start: {'the whole image' if source == 'none' else f'{source} face boxes'}"
          + (f" ({starts.count(None)} image(s) without one: the whole image)" if source != "none" and None in starts
             else ""))
    results, skipped = predict(Cascade(level1, level2, recipe), rows, args.batch, not args.quiet, starts=starts)
    if skipped:
        print(f"{len(skipped)} image(s) skipped: " + ", ".join(f"{k} {v}" for k, v in Counter(s["kind"] for s in skipped).items()))
    if not results:
        print("cascade_eval: error: no image could be evaluated", file=sys.stderr)
        return 2
    figures = score(results)
    figures.update({
        "images": len(results),
        "skipped": {"count": len(skipped), "by_kind": dict(Counter(s["kind"] for s in skipped)), "items": skipped},
        "refused_lines": {"count": len(problems), "items": [p.as_dict() for p in problems]},
        **facts,
        "models": {"level1": [str(p) for p in level1_files] if level1_files else None,
                   "level2": [str(p) for p in level2_files] if level2_files else None,
                   "export": args.export, "backend": args.backend},
        "recipe": recipe.as_dict(),
        "start": {"boxes": source, "whole_image": int(starts.count(None))},
    })
    if args.baseline == "mtcnn":
        path_of = {name: path for name, path, _, _ in rows}
        figures["baselines"] = baseline_figures(results, [path_of[r[0]] for r in results], figures_boxes(results),
                                                args.backend, not args.quiet)
    print(format_table(figures))
    if figures["level2"]:
        print(f"level 2 improves {100 * figures['level2_better_fraction']:.1f}% of the images")
    names = [r[0] for r in results]  # one line per scored image, no comment lines
    if args.level1_predictions:
        write_predictions(args.level1_predictions, names, [r[2] for r in results])
        print(f"wrote {args.level1_predictions} (level 1)")
    if args.predictions:
        write_predictions(args.predictions, names, [r[3] if r[3] is not None else r[2] for r in results])
        print(f"wrote {args.predictions} ({'level 2' if figures['level2'] else 'level 1'})")
    if args.json:
        write_json(args.json, figures)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
