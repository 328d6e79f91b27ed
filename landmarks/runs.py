"""Owns what the tools read from a finished run folder (runs/<name>/): each level's
`train.json` (written by landmarks.train) names its final weights, and the level's
`deploy.prototxt` sits beside it."""
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
    return models


def run_models_or_exit(run_dir):
    """`run_models` for a command-line tool: a missing model exits with the message."""
    try:
        return run_models(run_dir)
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None
