"""Owns what the tools read from a finished run folder (runs/<name>/): each level's
`train.json` (written by landmarks.train) names its final weights, and the level's
`deploy.prototxt` sits beside it. A level 2 not made from the run's current level 1
(landmarks.provenance) is refused rather than paired with it."""
import json
from pathlib import Path

LEVELS = ("level1", "level2")


def run_models(run_dir):
    """{"level1": (deploy, weights), "level2": (deploy, weights) or None} of a run folder.
    FileNotFoundError, naming the file, when level 1 is missing or a level has no weights."""
    run_dir = Path(run_dir)
    models = {}
    for level in LEVELS:
        folder = run_dir / level
        record_path = folder / "train.json"
        if not record_path.exists():
            models[level] = None
            continue
        record = json.loads(record_path.read_text())
        weights = record.get("final_weights")
        if not weights:
            raise FileNotFoundError(f"{record_path}: no final weights (training status: {record.get('status')})")
        weights = Path(weights)
        if not weights.is_absolute() and not weights.exists():
            weights = folder / weights
        models[level] = (folder / "deploy.prototxt", weights)
    if models["level1"] is None:
        raise FileNotFoundError(f"{run_dir}/level1/train.json: missing; train level 1 first")
    if models["level2"] is not None and (run_dir / "level1" / "stage.json").exists():
        from landmarks.provenance import stale_level2

        stale = stale_level2(run_dir)  # never pair a level 2 with a level 1 it was not made from
        if stale:
            raise FileNotFoundError(f"{run_dir}/level2: {stale}; run `make crops` and `make level2` again, "
                                    "or name the models with --l1/--l2")
    return models


def add_model_arguments(parser):
    """The tools' model options: `--run RUN`, or `--l1 DEPLOY WEIGHTS [--l2 DEPLOY WEIGHTS]`."""
    models = parser.add_mutually_exclusive_group(required=True)
    models.add_argument("--run", help="run folder: models from level1/ and level2/ train.json (final_weights)")
    models.add_argument("--l1", nargs=2, metavar=("DEPLOY", "WEIGHTS"), help="level-1 deploy prototxt and caffemodel")
    parser.add_argument("--l2", nargs=2, metavar=("DEPLOY", "WEIGHTS"), help="level-2 deploy prototxt and caffemodel")


def check_model_arguments(parser, args):
    """What argparse cannot say itself about the options of `add_model_arguments`."""
    if args.run and args.l2:
        parser.error("--l2 goes with --l1; --run finds both levels itself")


def chosen_models(args):
    """(level1, level2 or None), each (deploy, weights), from the options of
    `add_model_arguments`; a run folder without level-1 weights exits with the message."""
    if not args.run:
        return tuple(args.l1), tuple(args.l2) if args.l2 else None
    try:
        models = run_models(args.run)
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None
    return models["level1"], models["level2"]
