"""Copy a finished run's cascade into a models folder, as the tools load it by default:

  python tools/ship_models.py --run runs/mtfl_real [--out models/mtfl]

Writes level1_deploy.prototxt, level1.caffemodel, level2_deploy.prototxt, level2.caffemodel
(each level's final weights, as its train.json names them) and shipped.json: where each file
came from, its SHA-256, the run's settings.json and the cascade recipe its schedule trained for
(landmarks.runtime.inference.RECIPES, what the tools then run them with), so that a shipped model
always says which run and recipe made it. Files are written under temporary names, then renamed.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

from landmarks.common.atomic import write_json
from workflow import runs
from workflow.provenance import fingerprint


def ship(run_dir, out):
    """Copies the run's two levels into `out`; returns the record written to shipped.json."""
    models = runs.run_models(run_dir)
    if models["level2"] is None:
        raise FileNotFoundError(f"{run_dir}/level2/train.json: missing; a shipped cascade needs level 2")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"run": str(Path(run_dir).resolve()), "files": {}}
    for level, names in runs.SHIPPED_FILES.items():
        for source, name in zip(models[level], names):
            target = out / name
            partial = target.with_name(f".{name}.partial")
            shutil.copyfile(source, partial)
            partial.replace(target)
            record["files"][name] = {"from": str(Path(source).resolve()), "sha256": fingerprint(target)["sha256"],
                                     "bytes": target.stat().st_size}
    settings = Path(run_dir) / "settings.json"
    record["settings"] = json.loads(settings.read_text()) if settings.exists() else None
    # the recipe the tools run these models with (workflow.runs.recipe_name reads it back)
    record["recipe"] = runs.recipe_name(argparse.Namespace(run=str(run_dir), recipe="auto", l1=None))
    write_json(out / "shipped.json", record)
    return record


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a run folder with both levels trained (runs/<name>)")
    parser.add_argument("--out", default=str(runs.SHIPPED_MODELS_DIR), help="models folder (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        record = ship(args.run, args.out)
    except (FileNotFoundError, OSError, json.JSONDecodeError) as err:
        print(f"ship_models: {err}", file=sys.stderr)
        return 2
    for name, info in record["files"].items():
        print(f"{Path(args.out) / name}: {info['bytes']:,} bytes  <- {info['from']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
