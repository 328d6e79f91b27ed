"""Owns which models the tools run: those of a finished run folder (runs/<name>/: each
level's `train.json`, written by landmarks.train.driver, names its final weights, and the level's
`deploy.prototxt` sits beside it; `run_models` alone decides them, and refuses a level whose
training or stage was interrupted or failed, and a level 2 not made from the run's current
level 1 (workflow.provenance), rather than pair them), those given file by file
(--l1, --l2), or, when neither is given, the shipped ones in models/mtfl/
(SHIPPED_MODELS_ENV moves that folder, for tests); and which cascade recipe runs them
(landmarks.runtime.inference.RECIPES): `--recipe`, else the one their schedule trained for (a run's
settings.json, the shipped models' shipped.json), else the article's.
"""
import json
import os
import sys
from pathlib import Path

LEVELS = ("level1", "level2")
RECIPE_NAMES = ("article", "real")  # landmarks.runtime.inference.RECIPES (not imported here: cv2 at --help)
SHIPPED_MODELS_DIR = Path(__file__).resolve().parent.parent / "models" / "mtfl"
SHIPPED_MODELS_ENV = "LANDMARKS_MODELS_DIR"  # another folder of shipped models (tests set it)
SHIPPED_FILES = {"level1": ("level1_deploy.prototxt", "level1.caffemodel"),
                 "level2": ("level2_deploy.prototxt", "level2.caffemodel")}


class UnfinishedRun(FileNotFoundError):
    """A run folder's models that must not be used: missing, interrupted, or mixed (a
    FileNotFoundError, which the tools already turn into one line and exit status 2)."""


def _rerun(run_dir, level):
    run = Path(run_dir).name
    if level == "level1":
        return f"run `make level1 RUN={run}` again (RESUME=1 continues an interrupted training)"
    return f"run `make crops RUN={run}` and `make level2 RUN={run}` again"


def finished_level(run_dir, level):
    """(deploy, weights) of `level` in run_dir as its finished stage left them, or None when
    it was never trained (no train.json). UnfinishedRun, naming the folder and what to
    run again, when its training or its stage did not finish or its files changed since."""
    folder = Path(run_dir) / level
    record_path = folder / "train.json"
    if not record_path.exists():
        return None
    try:
        record = json.loads(record_path.read_text())
    except ValueError:
        raise UnfinishedRun(f"{record_path}: not a training record (JSON); {_rerun(run_dir, level)}") from None
    weights = record.get("final_weights")
    if not weights:
        raise UnfinishedRun(f"{record_path}: no final weights (training status: {record.get('status')}); "
                            f"{_rerun(run_dir, level)}")
    weights = Path(weights)
    if not weights.is_absolute() and not weights.exists():
        weights = folder / weights
    deploy = folder / "deploy.prototxt"
    from workflow.provenance import unfinished

    problem = unfinished(run_dir, level, deploy, weights)
    if problem:
        raise UnfinishedRun(f"{folder}: {problem}; {_rerun(run_dir, level)}")
    return deploy, weights


def run_models(run_dir):
    """{"level1": (deploy, weights), "level2": (deploy, weights) or None} of a run folder: the one
    place that decides a run folder's current models. UnfinishedRun (a FileNotFoundError),
    naming the folder and what to run again, when level 1 is missing, when a level's training
    or stage was interrupted or failed, or when level 2 was not made from the current level 1."""
    run_dir = Path(run_dir)
    models = {level: finished_level(run_dir, level) for level in LEVELS}
    if models["level1"] is None:
        raise UnfinishedRun(f"{run_dir}/level1/train.json: missing; train level 1 first "
                            f"(`make level1 RUN={run_dir.name}`)")
    if models["level2"] is not None:
        from workflow.provenance import stale_level2

        stale = stale_level2(run_dir)  # never pair a level 2 with a level 1 it was not made from
        if stale:
            raise UnfinishedRun(f"{run_dir}/level2: {stale}; {_rerun(run_dir, 'level2')}")
    return models


def shipped_models_dir():
    return Path(os.environ.get(SHIPPED_MODELS_ENV) or SHIPPED_MODELS_DIR)


def shipped_models():
    """{"level1": (deploy, weights), "level2": (deploy, weights)} of the shipped models.
    FileNotFoundError naming every missing file."""
    folder = shipped_models_dir()
    models = {level: tuple(folder / name for name in names) for level, names in SHIPPED_FILES.items()}
    missing = [str(path) for pair in models.values() for path in pair if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"no model given (--run, or --l1 [--l2]) and the shipped models are missing: "
                                f"{', '.join(missing)}")
    return models


def add_model_arguments(parser):
    """The tools' model options: `--run RUN`, or `--l1 DEPLOY WEIGHTS [--l2 DEPLOY WEIGHTS]`;
    neither: the shipped models."""
    models = parser.add_mutually_exclusive_group()
    models.add_argument("--run", help="run folder: models from level1/ and level2/ train.json (final_weights)")
    models.add_argument("--l1", nargs=2, metavar=("DEPLOY", "WEIGHTS"), help="level-1 deploy prototxt and caffemodel")
    parser.add_argument("--l2", nargs=2, metavar=("DEPLOY", "WEIGHTS"), help="level-2 deploy prototxt and caffemodel")
    parser.add_argument("--recipe", choices=("auto",) + RECIPE_NAMES, default="auto",
                        help="how the cascade runs the nets: article (once each, the article's crop) or real "
                             "(mirrored answers averaged, level 1's second look at the upright face, level 2 on "
                             "an upright crop); auto: the one the models' schedule trained for (a run's settings, "
                             "the shipped models' shipped.json), article for --l1 (default: auto)")
    parser.epilog = ((parser.epilog or "") + f"\nWithout --run or --l1: the shipped models in {SHIPPED_MODELS_DIR} "
                     f"(${SHIPPED_MODELS_ENV} names another folder).").strip()


def check_model_arguments(parser, args):
    """What argparse cannot say itself about the options of `add_model_arguments`."""
    if args.run and args.l2:
        parser.error("--l2 goes with --l1; --run finds both levels itself")
    if args.l2 and not args.l1:
        parser.error("--l2 goes with --l1")


def _exit(message):
    print(message, file=sys.stderr)
    raise SystemExit(2)


def chosen_models(args):
    """(level1, level2 or None), each (deploy, weights), from the options of
    `add_model_arguments`: a run folder, the given files, or the shipped models. Missing
    models exit with one line naming the files, status 2."""
    try:
        if args.l1:
            models = {"level1": tuple(args.l1), "level2": tuple(args.l2) if args.l2 else None}
        elif args.run:
            models = run_models(args.run)
        else:
            models = shipped_models()
    except FileNotFoundError as exc:
        _exit(str(exc))
    return models["level1"], models["level2"]


def _schedule_recipe(settings):
    """The recipe name a settings.json's schedule trained for ("article" when unknown)."""
    from landmarks.nets.solvers import SCHEDULES

    schedule = SCHEDULES.get((settings or {}).get("schedule"))
    return schedule.recipe if schedule else "article"


def _json_or_none(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def recipe_name(args):
    """The recipe the options of `add_model_arguments` choose (see the module doc)."""
    name = getattr(args, "recipe", "auto") or "auto"
    if name != "auto":
        return name
    if getattr(args, "l1", None):
        return "article"
    if getattr(args, "run", None):
        return _schedule_recipe(_json_or_none(Path(args.run) / "settings.json"))
    shipped = _json_or_none(shipped_models_dir() / "shipped.json") or {}
    return shipped.get("recipe") or _schedule_recipe(shipped.get("settings"))


def chosen_recipe(args):
    """The landmarks.runtime.inference.Recipe of `recipe_name(args)`."""
    from landmarks.runtime.inference import recipe_named

    return recipe_named(recipe_name(args))
