"""Level-2 data: crops around level 1's predicted face, labels normalised by the crop size.

    python -m data_prep.level2 --dataset ROOT --predictions FILE --out DIR --thresh 0.05 --format ...

FILE is level 1's predictions for the images (`data_prep.predictions`); with
--train-crops truth, training crops are cut around the true points instead (val and test
always around the predictions, as at inference time). The crop rule is
`landmarks.conventions.crop`'s (the same code the demo and evaluation use), `--crop-rule` picks which
(article, or upright for the `real` recipe); degenerate crops fall back to
the whole image and are counted. TRAINING samples whose level-1 error (SPEC metric) exceeds
--thresh are dropped and listed in the manifest; val and test samples never are, since at
inference time there is no ground truth to drop by. Use the same dataset options (--split,
--seed, --limit, ...) as for level 1. Output layout as level 1, plus crop boxes in the TSVs.
"""
import argparse
import dataclasses
import math
import os
import sys

from data_prep import build
from data_prep.dataset import DataError, Problem
from data_prep.predictions import PredictionsError, read_predictions
from landmarks.conventions.crop import CROP_RULES

TRAIN_CROPS = ("prediction", "truth")
DEFAULT_THRESH = 0.05  # the article used 0.10 and concluded that 0.05 would have been better


def tasks_for(dataset, predictions_file):
    """(tasks in list order, problems for images without a prediction, predicted names
    that are not in the data set)."""
    try:
        predictions = read_predictions(predictions_file)
    except PredictionsError as exc:
        raise DataError(str(exc)) from None
    lookup = predictions.as_dict()
    tasks, problems = [], []
    for i, e in enumerate(dataset.entries):
        predicted = lookup.get(e.name)
        if predicted is None:
            problems.append(Problem("no level-1 prediction", os.path.basename(predictions_file),
                                    e.source, e.line, e.name))
            continue
        tasks.append(build.Task(e.split, i, e.name, dataset.image_path(e.name), e.points, e.line,
                                e.source, prediction=predicted))
    if not tasks:
        raise DataError(f"{predictions_file}: predicts none of the {len(dataset.entries)} images of the data set")
    known = {e.name for e in dataset.entries}
    return tasks, problems, sum(name not in known for name in predictions.names)


def build_level2(args):
    """Build (or find current) the level-2 data folder; the manifest dict, or None if current."""
    if not (args.thresh >= 0):
        raise DataError(f"--thresh must be >= 0 (inf: keep every sample), got {args.thresh}")
    inputs = build.resolve_dataset(args)
    if not os.path.isfile(args.predictions):
        raise DataError(f"{args.predictions}: no such predictions file")
    inputs["predictions"] = args.predictions
    extra = {"thresh": args.thresh if math.isfinite(args.thresh) else "inf", "train_crops": args.train_crops}
    if args.crop_rule != "article":  # recorded only when not the article's, so older data stays current
        extra["crop_rule"] = args.crop_rule
    _, record, current = build.preflight(args, 2, inputs, extra, image_dir=build.image_folder(args))
    if current:
        return None
    dataset = build.load_dataset(args)
    tasks, missing, unknown = tasks_for(dataset, args.predictions)
    warnings = list(dataset.warnings)
    if unknown:
        warnings.append(f"{args.predictions}: {unknown} predicted images are not in this data set (other options?)")
    aug = build.augment_config(args)
    tasks = build.order_tasks(tasks, args.seed, aug, lambda t, k, j: dataclasses.replace(t, copy=k, jitter=j))
    record.update(source=build.source_record(dataset), problems=dataset.problems + missing, warnings=warnings)
    settings = build.Settings(level=2, size=args.size, thresh=args.thresh, train_crops=args.train_crops,
                              crop_rule=args.crop_rule)
    return build.run(args.out, tasks, settings, record, build.writers.formats_of(args.format),
                     args.shard_size, args.workers, not args.quiet)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data_prep.level2", description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", required=True, metavar="FILE",
                        help="level 1's predictions for the images (data_prep.predictions format)")
    parser.add_argument("--thresh", type=float, default=DEFAULT_THRESH,
                        help="drop TRAINING images whose level-1 error (fraction of the diagonal) exceeds this; "
                             "'inf' keeps all (default: %(default)s)")
    parser.add_argument("--train-crops", choices=TRAIN_CROPS, default="prediction",
                        help="cut TRAINING crops around level 1's prediction (the article; --thresh applies) or "
                             "around the true points, to be jittered by --augment (Sun et al.) (default: %(default)s)")
    parser.add_argument("--crop-rule", choices=CROP_RULES, default="article",
                        help="landmarks.conventions.crop's rule: the article's square around the nose, clipped to the image, "
                             "or upright: the same square unclipped and turned so that the predicted eyes are level "
                             "(default: %(default)s)")
    build.add_common_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def describe(result):
        dropped = result["counts"]["skipped_by_kind"].get("level-1 error above threshold", 0)
        return f"{build.summary(result)}; dropped by --thresh {args.thresh}: {dropped}"

    return build.cli_main("data_prep.level2", build_level2, args, describe)


if __name__ == "__main__":
    sys.exit(main())
