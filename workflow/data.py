"""Owns the data a run trains on: the dataset root (the built-in synthetic CelebA made on first
use), the shared level-1 data folder for these settings and its build through data prep's own
command line (`python -m data_prep.level1`, exactly what a user would run by hand), the
dataset as the stages read it, and the test-phase length its manifest implies.
"""
import hashlib
import math
import subprocess
import sys
from pathlib import Path

from data_prep import readers
from landmarks.common.caffe_runtime import ROOT
from workflow.settings import WorkflowError, augment_args, dataset_path, read_json


def python_module(module, *args):
    """Runs `python -m module args` (data prep's own command line), failing loudly."""
    command = [sys.executable, "-m", module, *[str(a) for a in args]]
    print("$", " ".join(command), flush=True)
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        raise WorkflowError(f"{module} failed; see its message above")


def dataset_root(settings):
    """The dataset root to use; generates the synthetic CelebA first when none is given."""
    root = dataset_path(settings)
    if settings.dataset:
        return root
    python_module("data_prep.synthetic", "--out", root, "--count", settings.synthetic_count, "--seed", settings.seed)
    return root


def _short_digest(text):
    return hashlib.sha1(str(text).encode()).hexdigest()[:8]


def level1_data_dir(settings):
    """Where level-1 data for these settings lives: shared by runs (data prep's manifest makes
    a rerun with the same inputs do nothing), one folder per dataset and split."""
    if settings.dataset:
        digest = _short_digest(Path(settings.dataset).resolve())
        variant = f"-{settings.variant}" if settings.dataset_format == "celeba" else ""
        tag = f"{settings.dataset_format}{variant}-{settings.split}-seed{settings.seed}-{digest}"
    else:
        tag = f"synthetic-{settings.synthetic_count}-seed{settings.seed}"
    if settings.limit:
        tag += f"-limit{settings.limit}"
    augment = augment_args(settings, 1)
    if augment:  # each augmentation its own folder, so that runs with others never rebuild it
        tag += "-aug" + _short_digest(" ".join(map(str, augment)))
    return Path(settings.data_root) / "level1" / f"{tag}-{settings.input_size}px"


def prepare_level1_data(settings):
    """The level-1 data for these settings (made if missing); returns (dataset root, folder)."""
    root = dataset_root(settings)
    data_dir = level1_data_dir(settings)
    args = ["--dataset", root, "--dataset-format", settings.dataset_format, "--out", data_dir, "--format", "both",
            "--size", settings.input_size, "--variant", settings.variant, "--split", settings.split, "--seed", settings.seed]
    if settings.limit:
        args += ["--limit", settings.limit]
    if settings.rebuild:
        args.append("--force")
    python_module("data_prep.level1", *args, *augment_args(settings, 1))
    return root, data_dir


def load_dataset(settings, root):
    return readers.load(str(root), settings.dataset_format, variant=settings.variant, split=settings.split,
                        seed=settings.seed, limit=settings.limit or None)


def test_iter(data_dir, batch):
    """Enough test batches to see the (test-phase) split once, from data prep's manifest."""
    manifest = read_json(Path(data_dir) / "manifest.json", {})
    count = ((manifest.get("counts") or {}).get("written") or {}).get("test", 0)
    return max(1, math.ceil(count / batch)) if count else None
