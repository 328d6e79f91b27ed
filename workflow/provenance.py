"""Owns what each stage of a run folder was made from, so that a rerun never mixes old and new.

A finished stage's `stage.json` gets a `made_from` block: the fingerprints (bytes, SHA-256) of
the upstream files it read, the settings that decide its result and the Caffe build; and an
`outputs` block with the fingerprints of what it wrote. A later stage compares what it is
about to use with those records and refuses, naming the input and why, when they differ
(`WorkflowError` in the workflow). A stage that starts again first forgets the results that
depend on it (`forget`), report.md among them, so a failed or interrupted rerun leaves nothing
of the old run that the report could show beside the new one. `unfinished` says why a level's
models are not those of a finished stage (workflow.runs refuses them).
"""
import hashlib
import json
from pathlib import Path

# Results in the run folder that each level's stage (re)writes, besides its own folder's.
OWNED = {
    "level1": ("metrics.json", "timing.json", "plots/per_point.png", "plots/histograms.png", "plots/ced.png",
               "plots/worst.png", "plots/network.png", "level1/stage.json", "level1/predictions.txt",
               "level1/predictions.skipped.json", "level2/stage.json", "report.md"),
    "level2": ("timing.json", "level2/stage.json", "level2/predictions.txt", "level2/predictions.skipped.json",
               "report.md"),
}  # report.md: rewritten when the stage finishes, and by `make report`
# The options of data_prep.level2's manifest that must match the run's settings.
CROP_OPTIONS = {"thresh": "thresh", "size": "input_size", "limit": "limit", "seed": "seed", "split": "split",
                "variant": "variant", "train_crops": "train_crops"}


def fingerprint(path):
    """{"path", "bytes", "sha256"} of a file."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _read(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def forget(run_dir, level):
    """Remove the run folder's results that depend on `level` ("level1" or "level2") before
    it runs again; level 2's entries of metrics.json go with a level-2 rerun."""
    run_dir = Path(run_dir)
    for rel in OWNED[level]:
        (run_dir / rel).unlink(missing_ok=True)
    if level == "level2":
        metrics = _read(run_dir / "metrics.json")
        if metrics:
            from landmarks.common.atomic import write_json

            write_json(run_dir / "metrics.json", {split: {k: v for k, v in levels.items() if k != "level2"}
                                                  for split, levels in metrics.items()})


def crops_problems(run_dir, settings):
    """Why run_dir/level2/data cannot be used for level 2 with these settings: [] when it was
    made from the current level-1 predictions with the same crop options."""
    run_dir = Path(run_dir)
    manifest = _read(run_dir / "level2" / "data" / "manifest.json") or {}
    predictions = run_dir / "level1" / "predictions.txt"
    problems = []
    made_from = ((manifest.get("inputs") or {}).get("predictions") or {}).get("sha256")
    if not predictions.exists():
        problems.append(f"{predictions} is missing")
    elif made_from != fingerprint(predictions)["sha256"]:
        problems.append("the crops were made from other level-1 predictions than level1/predictions.txt "
                        "(level 1 was trained again since)")
    options = manifest.get("options") or {}
    for option, field in CROP_OPTIONS.items():
        now, then = getattr(settings, field), options.get(option)
        if option == "limit":
            now = now or None
        if option in options and then != now and not (option == "thresh" and float(then) == float(now)):
            problems.append(f"the crops were made with {option} {then}, the settings now say {now}")
    return problems


def stage_record(record, settings, inputs, outputs):
    """`record` with `made_from` (fingerprints of the `inputs` files {name: path}, the settings
    that decide the result, the Caffe build) and `outputs` (fingerprints of {name: path})."""
    from dataclasses import asdict

    from landmarks.common import caffe_runtime

    build = caffe_runtime.build_info()
    decisive = {k: v for k, v in asdict(settings).items() if k not in ("run", "resume", "runs_root", "data_root")}
    made_from = {"inputs": {name: fingerprint(path) for name, path in inputs.items()}, "settings": decisive,
                 "caffe_build": {k: build.get(k) for k in ("source", "sha256", "mode", "layers")}}
    return dict(record, made_from=made_from, outputs={name: fingerprint(path) for name, path in outputs.items()})


def _sha(record, *keys):
    for key in keys:
        record = (record or {}).get(key)
    return record


def unfinished(run_dir, level, deploy, weights):
    """Why `level`'s models in run_dir (the deploy and weights its train.json names) are not
    those of a finished stage, or '': its training ended "done", its stage.json records the
    stage's end, and the files are still those the stage finished with."""
    folder = Path(run_dir) / level
    status = (_read(folder / "train.json") or {}).get("status")
    if status != "done":
        return f"its last training did not finish (train.json status: {status})"
    stage = _read(folder / "stage.json")
    if not stage:
        return "its last run did not finish (no stage.json: interrupted or failed after training)"
    for name, path in (("weights", weights), ("deploy", deploy)):
        recorded = _sha(stage, "outputs", name, "sha256")
        if recorded is None and name == "deploy":
            continue  # stage records from before the deploy was fingerprinted
        if not Path(path).is_file():
            return f"{path} is missing"
        if recorded != fingerprint(path)["sha256"]:
            return f"{path} is not the {name} file its finished run wrote"
    return ""


def stale_level2(run_dir):
    """Why level 2's results in run_dir are not those of the current level 1 and crops, or ''."""
    run_dir = Path(run_dir)
    stage2 = _read(run_dir / "level2" / "stage.json")
    if not stage2:
        return "level 2 has not finished since level 1 was last trained"
    stage1 = _read(run_dir / "level1" / "stage.json")
    if _sha(stage1, "outputs", "weights", "sha256") != _sha(stage2, "made_from", "inputs", "level1_weights", "sha256"):
        return "level 2 was made from an earlier level 1"
    crops = run_dir / "level2" / "data" / "manifest.json"
    if not crops.exists() or fingerprint(crops)["sha256"] != _sha(stage2, "made_from", "inputs", "crops", "sha256"):
        return "the level-2 crops were made again since level 2 was trained"
    return ""
