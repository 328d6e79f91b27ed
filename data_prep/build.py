"""Owns turning a list of tasks into a finished data folder, for both levels.

A `Task` is one sample to make (an image, its ground truth, level 1's prediction for level 2,
an augmentation jitter for a copy). `make_sample` is the per-sample worker: it reads the
header, checks the points, applies the threshold (level 2), decodes at the reduction the
region allows, cuts and labels; any bad input becomes a `Problem`, never an exception.
`run` streams the tasks through a process pool (ordered, chunked, progress bar with ETA)
into the writers, then writes the preview and the manifest. The CLI options both levels
share are defined here too, once.
"""
import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from data_prep import augment, dataset, errata, manifest, parallel, readers, writers
from data_prep.dataset import DataError, Problem
from data_prep.preview import contact_sheet
from landmarks.common import checks
from landmarks.common.progress import bar as progress_bar
from landmarks.conventions import images
from landmarks.conventions.crop import box_from_points, level2_box
from landmarks.conventions.labels import as_rows, normalise
from landmarks.conventions.metrics import image_errors

PREVIEW_COUNT = 40  # "the first few dozen" samples on the contact sheet
SHOW_PROBLEMS = 20  # skips printed on screen; all of them go into the manifest
POINT_COLUMNS = tuple(f"{a}{i}" for i in range(1, 6) for a in "xy")


@dataclass(frozen=True)
class Settings:
    level: int
    size: int = images.DEFAULT_SIZE
    thresh: float = float("inf")  # level 2: training samples with a larger level-1 error are dropped
    train_crops: str = "prediction"  # level 2: TRAINING crops around level 1's prediction, or the truth
    crop_rule: str = "article"  # level 2: landmarks.conventions.crop's rule (article, or upright: eyes levelled)


@dataclass(frozen=True)
class Task:
    split: str
    index: int  # the entry's position in the data set (seeds its augmentation)
    name: str
    path: str
    points: np.ndarray  # ground truth (5, 2), original pixels
    line: int  # in the list file
    source: str  # the list file, for messages
    prediction: np.ndarray = None  # level 2: level 1's points (5, 2), original pixels
    copy: int = 0  # 0: the sample itself; k >= 1: augmented copy k
    jitter: augment.Jitter = None


@dataclass
class Sample:
    split: str
    pixels: np.ndarray  # uint8 (S, S, 3) BGR
    label: np.ndarray  # float32 (10,)
    row: list  # the samples.tsv fields
    frame: tuple  # (w, h) of the box the patch shows, to draw labels back
    notes: tuple  # ("converted from L", ...) counted in the manifest


def tsv_header(level):
    base = ("name", "width", "height") + POINT_COLUMNS
    box = ("crop_x0", "crop_y0", "crop_x1", "crop_y1", "crop_angle") if level == 2 else ()
    return base + box + ("aug", "transform") + (("fallback",) if level == 2 else ())


def _fmt(v):
    return f"{float(v):.10g}"


def make_sample(task, settings):
    """One `Sample`, or the `Problem` that prevents it. Never raises for bad input."""
    where = f"listed at {os.path.basename(task.source)}:{task.line}"
    try:
        encoded = images.open_image(task.path)  # read once; header parsed, nothing decoded yet
    except images.ImageError as exc:
        return Problem(exc.kind, "; ".join(filter(None, [exc.detail, where])), task.path, 0, task.name)
    width, height, mode = encoded.width, encoded.height, encoded.mode
    gt = task.points
    outside = dataset.outside_image(gt, width, height)
    if outside == 2:
        return Problem(dataset.OUTSIDE_KIND, f"image is {width}x{height}, more than "
                       f"{100 * dataset.OUTSIDE_MARGIN:g}% of its side out", task.source, task.line, task.name)
    if width < 2 or height < 2:
        return Problem("image too small", f"{width}x{height}", task.path, 0, task.name)
    notes = [dataset.OUTSIDE_NOTE] if outside and not task.copy else []
    fallback = ""
    if settings.level == 1 and task.jitter is not None and task.jitter.tight:
        box = tuple(int(round(v)) for v in box_from_points(gt))  # augment.apply then scales and moves it
    elif settings.level == 1:
        box = (0, 0, width, height)
    elif task.split == "train" and settings.train_crops == "truth":
        # Sun et al.'s way: the crop rule applied to the true points; augmentation copies then
        # jitter it, so that level 2 learns to correct a misplaced crop without depending on
        # how well level 1 happens to fit its own training images.
        crop = level2_box(settings.crop_rule, gt, width, height)
    else:
        error = float(image_errors(task.prediction[None], gt[None], [width], [height])[0])
        if task.split == "train" and not error <= settings.thresh:  # `not <=`: a NaN error is dropped too
            return Problem("level-1 error above threshold", f"{error:.4f} > {settings.thresh}",
                           task.source, task.line, task.name)
        crop = level2_box(settings.crop_rule, task.prediction, width, height)
    transform, jitter = None, task.jitter
    if settings.level == 2:
        box, fallback, transform = (crop.x0, crop.y0, crop.x1, crop.y1), crop.fallback, crop.transform
        if fallback:
            notes.append(f"crop fallback: {fallback}")
        if jitter is not None and crop.angle:  # the copy turns on top of the levelling turn
            jitter = dataclasses.replace(jitter, angle=jitter.angle + crop.angle)
    if jitter is not None:
        box, transform = augment.apply(box, jitter)
    region = (box[2] - box[0], box[3] - box[1])
    try:
        decoded = images.decode(encoded, min_side=settings.size, region=region)
    except images.ImageError as exc:
        return Problem(exc.kind, "; ".join(filter(None, [exc.detail, where])), task.path, 0, task.name)
    if mode not in ("RGB",):
        notes.append(f"converted from {mode}")
    if settings.level == 1 and transform is None:
        pixels = images.level1_pixels(decoded, settings.size)  # the same pixels as render, faster
    else:
        pixels = images.render(decoded, images.frame_matrix(box, settings.size, transform), settings.size,
                               edge=task.jitter is not None and task.jitter.edge)
    pixels = augment.photometric(pixels, task.jitter)
    frame_pts = augment.frame_points(gt, box, transform, flip=jitter is not None and jitter.flip)
    label = as_rows(normalise(frame_pts, region[0], region[1])).astype(np.float32)
    row = [task.name, width, height] + [_fmt(v) for v in gt.reshape(-1)]
    if settings.level == 2:
        row += list(box) + [f"{crop.angle:.3f}"]
    row += [task.copy, jitter.describe() if jitter is not None else "-"]
    if settings.level == 2:
        row.append(fallback.replace(" ", "_") or "-")
    return Sample(task.split, pixels, label, row, region, tuple(notes))


_SETTINGS = None


def _init_worker(settings):
    global _SETTINGS
    _SETTINGS = settings


def _work(task):
    return make_sample(task, _SETTINGS)


def stream(tasks, settings, workers=None, progress=True, desc=""):
    """Yield `make_sample` results in task order, using `workers` processes; at most a few
    chunks per worker are in flight at any time (data_prep.parallel)."""
    workers = workers or parallel.available_cores()
    with progress_bar(total=len(tasks), unit="img", disable=not progress, desc=desc, dynamic_ncols=True) as bar:
        if workers <= 1 or len(tasks) < 2:
            results = (make_sample(task, settings) for task in tasks)
        else:
            # Chunks amortise the inter-process traffic; small enough to keep the bar moving.
            chunk = max(1, min(64, len(tasks) // (workers * 8)))
            results = parallel.imap(_work, tasks, workers, chunk=chunk, initializer=_init_worker, initargs=(settings,))
        try:
            for result in results:
                yield result
                bar.update()
        finally:
            results.close()  # the pool shuts down now, not when the generator is collected


@contextlib.contextmanager
def _ctrl_c_flag():
    """Ctrl-C only sets a flag, which the build loop turns into KeyboardInterrupt. Python's own
    handler raises at whatever bytecode runs next, and when that is a finaliser (a __del__
    run by the garbage collector: arrays, h5py and lmdb objects churn here) the exception is
    printed as "ignored" and lost, so the build would run to the end and look finished."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield stop  # signals go to the main thread only; a caller's own handler is kept
        return
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _say(text, progress):
    (tqdm.write if progress and sys.stderr.isatty() else print)(text, file=sys.stderr)  # write() draws \r


def run(out_dir, tasks, settings, record, formats, shard_size=writers.DEFAULT_SHARD_SIZE,
        workers=None, progress=True):
    """Make every task's sample and write the data folder; returns the manifest dict.
    `record` holds the manifest's fixed part (key, source, options, reading problems)."""
    started = time.time()
    expected = Counter(t.split for t in tasks)
    writer = writers.DatasetWriter(out_dir, formats, settings.size, shard_size, expected, tsv_header(settings.level))
    skipped = list(record.pop("problems", []))
    for warning in record.get("warnings", []):
        _say(f"warning: {warning}", progress)
    for problem in skipped[:SHOW_PROBLEMS]:
        _say(f"skip: {problem}", progress)
    notes, preview, skipped_copies = Counter(), [], 0
    with _ctrl_c_flag() as ctrl_c:
        try:
            results = stream(tasks, settings, workers, progress, desc=f"level {settings.level}")
            for i, result in enumerate(results):  # (not zip: the stream must run to its end and close its pool)
                if ctrl_c.is_set():
                    raise KeyboardInterrupt
                if isinstance(result, Problem) and tasks[i].copy:
                    skipped_copies += 1  # the same problem as its original's, listed once there
                    continue
                if isinstance(result, Problem):
                    skipped.append(result)
                    if len(skipped) <= SHOW_PROBLEMS:
                        _say(f"skip: {result}", progress)
                    continue
                writer.add(result.split, result.pixels, result.label, result.row)
                notes.update(result.notes)
                if len(preview) < PREVIEW_COUNT:
                    preview.append(result)
            if preview:
                sheet = contact_sheet([s.pixels for s in preview], [s.label for s in preview], [s.frame for s in preview])
                # encoded here and written by Python: cv2.imwrite only returns False on a full disk
                with open(os.path.join(writer.tmp_dir, "preview.png"), "wb") as fh:
                    fh.write(cv2.imencode(".png", sheet)[1].tobytes())
            if ctrl_c.is_set():  # pressed after the last sample: still nothing is committed
                raise KeyboardInterrupt
            counts = writer.counts()
            if not counts.get("train"):  # nothing to train on is a failed build, never a finished one
                first = f"; first: {skipped[0]}" if skipped else ""
                raise DataError(f"no training samples written ({len(skipped)} skipped{first}); "
                                       f"nothing was written to {out_dir}")
            written = writer.commit()
        except BaseException:
            writer.abort()
            raise
    if len(skipped) > SHOW_PROBLEMS:
        _say(f"... {len(skipped) - SHOW_PROBLEMS} more skipped (all listed in {out_dir}/manifest.json)", progress)
    by_kind = Counter(p.kind for p in skipped)
    result = dict(record)
    empty = [s for s in ("train", "test") if not counts.get(s)]
    if empty:  # the generated nets read train and test
        result["warnings"] = list(result.get("warnings", [])) + [f"no {' or '.join(empty)} samples written"]
        _say(f"warning: no {' or '.join(empty)} samples written", progress)
    result["counts"] = {
        "tasks": dict(expected),
        "written": {split: counts.get(split, 0) for split in dataset.SPLITS},
        "augmented_copies": dict(Counter(t.split for t in tasks if t.copy)),
        "skipped": len(skipped),
        "skipped_copies": skipped_copies,
        "skipped_by_kind": dict(by_kind),
        "notes": dict(notes),
    }
    result["skipped"] = [p.as_dict() for p in skipped]
    result["outputs"] = manifest.output_records(out_dir, written)
    result["seconds"] = round(time.time() - started, 2)
    manifest.write(out_dir, result)
    return result


# ---- the command-line options both levels share ------------------------------------------

def add_common_arguments(parser):
    parser.add_argument("--dataset", "--celeba", dest="dataset", required=True, metavar="ROOT",
                        help="dataset root: CelebA as distributed (Img/, Anno/, Eval/, or flattened), MTFL "
                             "(training.txt [+ testing.txt]) or Sun et al.'s lists (trainImageList.txt "
                             "[+ testImageList.txt]); --celeba is an alias")
    parser.add_argument("--dataset-format", type=readers.format_choice, default="auto", metavar="FORMAT",
                        help=f"layout of ROOT: {' | '.join(dataset.FORMAT_CHOICES)} (default: auto, from the files present)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (hdf5/, lmdb/, *.samples.tsv, manifest.json)")
    parser.add_argument("--format", choices=writers.FORMAT_CHOICES, default="hdf5",
                        help="what to write (default: %(default)s)")
    parser.add_argument("--variant", choices=("wild", "align"), default="wild",
                        help="CelebA: in-the-wild images or the aligned ones (default: %(default)s, as in the article)")
    parser.add_argument("--split", choices=dataset.SPLIT_CHOICES, default="official",
                        help="official: CelebA's partition file, or a list layout's test list (val and test carved "
                             "from the training list with --seed where there is none); random: everything carved "
                             "with --seed (default: %(default)s)")
    parser.add_argument("--train-fraction", type=float, default=dataset.DEFAULT_TRAIN_FRACTION,
                        help="carved splits: train share (default: the article's %(default)s)")
    parser.add_argument("--val-fraction", type=float, default=None,
                        help="carved splits: val share, the rest is test (default: CelebA 0, the article's 80/20; "
                             "MTFL and Sun 0.1, so 80/10/10)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random split, the training order and augmentation")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="use at most N images, shared among the splits in proportion (quick runs)")
    parser.add_argument("--size", type=int, default=images.DEFAULT_SIZE, help="network input side in pixels (default: %(default)s)")
    parser.add_argument("--shard-size", type=int, default=writers.DEFAULT_SHARD_SIZE,
                        help="max samples per HDF5 file; HDF5Data loads a whole file (default: %(default)s)")
    parser.add_argument("--augment", type=int, default=0, metavar="COPIES",
                        help="transformed copies per TRAINING image (default: 0, the article's data)")
    defaults = augment.AugmentConfig()
    parser.add_argument("--aug-flip", type=float, default=defaults.flip, help="mirror probability (default: %(default)s)")
    parser.add_argument("--aug-rotate", type=float, default=defaults.rotate, help="max rotation in degrees (default: %(default)s)")
    parser.add_argument("--aug-scale", type=float, default=defaults.scale, help="box scale jitter, +-fraction (default: %(default)s)")
    parser.add_argument("--aug-shift", type=float, default=defaults.shift, help="box shift jitter, +-fraction of its size (default: %(default)s)")
    parser.add_argument("--aug-zoom", type=float, default=defaults.zoom,
                        help="half the copies zoom out by up to this factor: a small face (default: %(default)s, off)")
    parser.add_argument("--aug-roam", type=float, default=defaults.roam,
                        help="a zoomed-out face moves across up to this fraction of the margin the zoom opened, "
                             "so that small faces are not all centred (default: %(default)s, off)")
    parser.add_argument("--aug-edge", type=float, default=defaults.edge,
                        help="probability that a copy's margin (zoom-out, shift, rotation) repeats the picture's edge "
                             "instead of black, as a photo has no frame line (default: %(default)s, off)")
    parser.add_argument("--aug-rotate-any", type=float, default=defaults.rotate_any,
                        help="probability of an angle from the whole circle (default: %(default)s)")
    parser.add_argument("--aug-grey", type=float, default=defaults.grey, help="grey copy probability (default: %(default)s)")
    parser.add_argument("--aug-colour", type=float, default=defaults.colour,
                        help="contrast and brightness jitter, +-fraction (default: %(default)s)")
    parser.add_argument("--aug-blur", type=float, default=defaults.blur, help="blur probability (default: %(default)s)")
    parser.add_argument("--aug-turned", type=float, default=defaults.turned,
                        help="extra copies of a turned head, up to this many times COPIES in proportion to how far "
                             f"it is turned (in full from {augment.TURN_FULL} inter-ocular distances of nose offset; "
                             "default: %(default)s, off)")
    parser.add_argument("--aug-tight", type=float, default=defaults.tight,
                        help="probability that a level-1 copy is cut around the face (a detector's box, "
                             f"{augment.TIGHT_SIDE[0]}-{augment.TIGHT_SIDE[1]} of it, moved) instead of the whole "
                             "image: the face fills or overflows the frame (default: %(default)s, off)")
    parser.add_argument("--workers", type=int, default=parallel.available_cores(),
                        help="worker processes (default: every available core, here %(default)s)")
    parser.add_argument("--no-errata", dest="errata", action="store_false",
                        help="keep labels that data_prep/errata.py knows to be wrong as given")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--force", action="store_true", help="rebuild even when manifest.json says the output is current")


def dataset_options(args):
    """The options that decide the samples (the build key), JSON-ready."""
    return {
        "root": os.path.abspath(args.dataset), "dataset_format": args.dataset_format, "variant": args.variant,
        "split": args.split,
        "train_fraction": args.train_fraction, "val_fraction": args.val_fraction, "seed": args.seed,
        "limit": args.limit, "size": args.size, "shard_size": args.shard_size, "format": args.format,
        "augment": augment_options(args),
        "errata": [e.name for e in errata.ERRATA] if args.errata else [],
    }


def image_folder(args):
    """The folder the dataset's images are read from (its state is part of the build key)."""
    return readers.image_folder(args.dataset, args.dataset_format, args.variant)


def resolve_dataset(args):
    """Fix args.dataset_format to the layout ROOT holds (auto: detected); returns the build's
    input text files {role: path}."""
    args.dataset_format = readers.resolve_format(args.dataset, args.dataset_format)
    return readers.input_files(args.dataset, args.dataset_format, args.variant, args.split)


def load_dataset(args):
    return readers.load(args.dataset, args.dataset_format, args.variant, args.split, args.train_fraction,
                        args.val_fraction, args.seed, args.limit, errata=args.errata)


def source_record(data):
    """The manifest's `source`: where the data came from and how its splits were made."""
    return {"root": data.root, "format": data.format, "variant": data.variant, "image_dir": data.image_dir,
            "lists": [f for f in (data.landmark_file, data.partition_file) if f], "split": data.split_record}


def augment_options(args):
    """The augmentation options as given, JSON-ready (part of the build key)."""
    return {"copies": args.augment, "flip": args.aug_flip, "rotate": args.aug_rotate, "scale": args.aug_scale,
            "shift": args.aug_shift, "zoom": args.aug_zoom, "roam": args.aug_roam, "edge": args.aug_edge,
            "rotate_any": args.aug_rotate_any,
            "grey": args.aug_grey, "colour": args.aug_colour, "blur": args.aug_blur, "turned": args.aug_turned,
            **({"tight": args.aug_tight} if args.aug_tight else {})}  # absent when off: earlier build keys stay


def augment_config(args):
    try:
        return augment.AugmentConfig(**augment_options(args))
    except ValueError as exc:
        raise DataError(str(exc)) from None


def order_tasks(tasks, seed, aug, make_copy):
    """Training tasks plus their augmented copies in a seeded shuffled order, then val and test
    in list order. `make_copy(task, copy, jitter)` makes copy k of a task."""
    train = [t for t in tasks if t.split == "train"]
    train += [make_copy(t, k, augment.draw(aug, seed, t.index, k))
              for t in train for k in range(1, augment.copies_for(aug, t.points) + 1)]
    order = np.random.default_rng(seed).permutation(len(train))
    rest = [t for s in ("val", "test") for t in tasks if t.split == s]
    return [train[i] for i in order] + rest


def preflight(args, level, input_files, extra_options=None, image_dir=None):
    """(key, record, up_to_date): the build key and manifest's fixed part; `up_to_date` when
    DIR already holds this build (nothing to do). `image_dir`'s state is part of the key."""
    if args.shard_size < 1 or args.size < 8 or (args.workers is not None and args.workers < 1):
        raise DataError("--shard-size and --workers must be at least 1, --size at least 8")
    options = dict(dataset_options(args), **(extra_options or {}))
    key, inputs = manifest.build_key(level, options, input_files, {"images": image_dir})
    record = {"level": level, "key": key, "format_version": manifest.FORMAT_VERSION,
              "inputs": inputs, "options": options}
    current = not args.force and manifest.is_current(args.out, key)
    problem = "" if current else checks.writable_problem(args.out)  # before the work, not after
    if problem:
        raise DataError(problem)
    return key, record, current


def summary(result):
    c = result["counts"]
    written = ", ".join(f"{s} {n}" for s, n in c["written"].items())
    notes = f"; notes {c['notes']}" if c["notes"] else ""
    return f"wrote {written}; skipped {c['skipped']}" + (f" {c['skipped_by_kind']}" if c["skipped"] else "") + notes


def cli_main(prog, build_fn, args, describe=summary):
    """The end of each level's command line: run `build_fn(args)` (a result dict, or None when
    the manifest says the output is current) and report; returns the exit status (2 for bad
    input, 130 for Ctrl-C)."""
    try:
        result = build_fn(args)
    except DataError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a full disk or a folder that cannot be written: the partial build is gone
        if not checks.is_disk_error(exc):
            raise
        print(f"{prog}: error: {checks.disk_message(exc, args.out)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing was written", file=sys.stderr)
        return 130
    if result is None:
        print(f"{prog}: {args.out} is up to date (manifest.json); nothing to do")
    else:
        print(f"{prog}: {describe(result)} -> {args.out}")
    return 0
