"""Owns a run's settings: the `Settings` the user's make variables become, checked and resolved
in full (every "auto" replaced, every value validated) before any stage writes anything;
where a run's folders are; the run's settings.json; and what the schedule decides (its
augmentation options for data prep, its length when ITERS is given, its cascade recipe).
"""
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from data_prep import readers
from data_prep.dataset import DataError
from landmarks.common import caffe_runtime, checks
from landmarks.common.atomic import write_json
from landmarks.common.caffe_runtime import ROOT
from landmarks.nets.mobilenet import DEPTHWISE_CHOICES, LOSS_CHOICES
from landmarks.nets.solvers import SCHEDULES

SPLITS = ("train", "val", "test")


class WorkflowError(RuntimeError):
    pass


@dataclass
class Settings:
    run: str = "default"
    dataset: str = ""  # a dataset root (CelebA, MTFL or Sun et al.'s lists); empty: the built-in synthetic CelebA
    dataset_format: str = "auto"  # celeba | mtfl | sun; auto: detected from the files present
    variant: str = "wild"  # CelebA only: in-the-wild or aligned images
    split: str = "official"
    synthetic_count: int = 5000  # enough for level 2 to beat level 1 within the demo schedule
    seed: int = 1
    schedule: str = "auto"  # auto: the article's on a GPU, the demo schedule on a CPU
    gpu: str = "auto"  # auto: GPU 0 when there is one; "" for CPU; "0", "0,1", "all"
    depthwise: str = "layer"
    format: str = "hdf5"
    thresh: float = 0.05
    input_size: int = 48
    limit: int = 0  # 0: every image
    augment: int = -1  # transformed copies per training image; -1: the schedule's
    train_crops: str = "auto"  # level 2's training crops: prediction | truth; auto: the schedule's
    loss: str = "auto"  # euclidean | wing; auto: the schedule's
    iterations: int = 0  # > 0: train each level this long, the schedule's lr steps scaled along
    resume: bool = False
    rebuild: bool = False  # data prep rebuilds even when its manifest says the data is current
    runs_root: str = str(ROOT / "runs")  # run folders: <runs_root>/<run>/
    data_root: str = str(ROOT / "data")  # synthetic CelebA and level-1 data

    def resolved(self):
        """A copy with every "auto" replaced by what this machine gets."""
        s = Settings(**asdict(self))
        gpus = caffe_runtime.gpu_count()
        if s.gpu == "auto":
            s.gpu = "0" if gpus else ""
        if s.schedule == "auto":
            s.schedule = "article" if gpus else "demo"
        if s.schedule not in SCHEDULES:
            raise WorkflowError(f"SCHEDULE must be one of {sorted(SCHEDULES)} or auto, got {s.schedule!r}")
        if s.depthwise not in DEPTHWISE_CHOICES:
            raise WorkflowError(f"DEPTHWISE must be one of {DEPTHWISE_CHOICES}, got {s.depthwise!r}")
        if s.train_crops == "auto":
            s.train_crops = SCHEDULES[s.schedule].train_crops
        if s.train_crops not in ("prediction", "truth"):
            raise WorkflowError(f"CROPS must be prediction, truth or auto, got {s.train_crops!r}")
        if s.loss == "auto":
            s.loss = SCHEDULES[s.schedule].loss
        if s.loss not in LOSS_CHOICES:
            raise WorkflowError(f"LOSS must be one of {LOSS_CHOICES} or auto, got {s.loss!r}")
        if s.iterations < 0:
            raise WorkflowError(f"ITERS must be >= 1 (or 0: the schedule's), got {s.iterations}")
        if s.augment < -1:
            raise WorkflowError(f"AUG must be >= 0 copies (or -1: the schedule's), got {s.augment}")
        if s.format not in ("hdf5", "lmdb"):
            raise WorkflowError(f"FORMAT must be hdf5 or lmdb, got {s.format!r}")
        if s.variant not in ("wild", "align"):
            raise WorkflowError(f"--variant must be wild or align, got {s.variant!r}")
        if s.split not in ("official", "random"):
            raise WorkflowError(f"--split must be official or random, got {s.split!r}")
        s.dataset_format = dataset_format(s)
        # before any work, and before settings.json records them: a GPU this build lacks is
        # refused here, not by the training driver after data prep and a rewritten settings.json
        problems = checks.settings_problems(s) + [checks.gpu_problem(s.gpu, gpus)]
        problems = [problem for problem in problems if problem]
        if problems:
            raise WorkflowError("; ".join(problems))
        return s


def run_dir(settings):
    return Path(settings.runs_root) / settings.run


def synthetic_root(settings):
    return Path(settings.data_root) / f"synthetic-celeba-{settings.synthetic_count}-seed{settings.seed}"


def dataset_path(settings):
    """The dataset the run uses: the given root, or the synthetic CelebA one."""
    return Path(settings.dataset) if settings.dataset else synthetic_root(settings)


def dataset_format(settings):
    """The layout of the run's dataset: the synthetic one is CelebA's; a given root's is
    detected unless DATASET= names it."""
    if not settings.dataset:
        return "celeba"
    try:
        return readers.resolve_format(settings.dataset, settings.dataset_format)
    except DataError as exc:
        raise WorkflowError(str(exc)) from None


def read_json(path, default=None):
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else default


def record_settings(settings, stage):
    """settings.json of the run: the resolved settings, merged over earlier stages'."""
    path = run_dir(settings) / "settings.json"
    merged = read_json(path, {})
    merged.update(asdict(settings))
    merged.update({"last_stage": stage, "dataset": settings.dataset or f"(synthetic) {synthetic_root(settings)}",
                   "caffe_build": caffe_runtime.build_info()["mode"], "python": sys.executable})
    write_json(path, merged)


def record_split(settings, data_dir):
    """settings.json gains how the dataset's splits were made (data prep's manifest says)."""
    source = (read_json(Path(data_dir) / "manifest.json", {}) or {}).get("source") or {}
    if source.get("split"):
        path = run_dir(settings) / "settings.json"
        write_json(path, dict(read_json(path, {}), dataset_split=source["split"]))


def scaled_schedule(schedule, iterations):
    """The schedule trained for `iterations` per level (0: as it is), its lr steps at the same
    fractions of the run: a shorter or longer budget with the same shape."""
    if not iterations:
        return schedule
    longest = max(schedule.max_iter.values())
    return replace(schedule, max_iter={level: iterations for level in schedule.max_iter},
                   stepvalue=tuple(max(1, round(v * iterations / longest)) for v in schedule.stepvalue))


def augment_args(settings, level):
    """data_prep's augmentation options for `level`: the schedule's, with AUG's copy count."""
    options = dict(SCHEDULES[settings.schedule].augment.get(level, {}))
    if settings.augment >= 0:
        options["copies"] = settings.augment
    if not options.get("copies"):
        return []
    args = []
    for name, value in sorted(options.items()):
        args += ["--augment" if name == "copies" else "--aug-" + name.replace("_", "-"), value]
    return args


def recipe(settings):
    """The cascade recipe of the run's schedule (landmarks.runtime.inference.RECIPES)."""
    from landmarks.runtime.inference import recipe_named  # cv2 and numpy: not needed for --help

    return recipe_named(SCHEDULES[settings.schedule].recipe)
