"""Owns the one dataset interface that everything downstream uses, whatever the layout on disk.

Layouts, one reader module each, all read into the same `Dataset` of `Entry`s:
    celeba  data_prep.celeba   Img/, Anno/list_landmarks_celeba.txt, Eval/list_eval_partition.txt
    mtfl    data_prep.mtfl     training.txt (+ testing.txt): path x1..x5 y1..y5 [4 attributes]
    sun     data_prep.sun      trainImageList.txt (+ testImageList.txt): path l r t b x1 y1 ... x5 y5
`detect(root)` names the layout from the files present; `load(root, fmt)` reads any of them;
`input_files(root, fmt)` gives the text files a build depends on (its manifest key). Each
reader module offers the same three functions, `present(root)`, `input_files(root, variant,
split)` and `load(root, variant, split, train_fraction, val_fraction, seed, limit)` (the list
layouts ignore `variant`), and nothing else is called from outside.

This module also owns what the readers share: the `Problem` a bad line or image becomes
(named with file:line, counted, skipped), `DataError` for fatal input, the rules for names
(CelebA: a plain file name; lists: a relative path, `\\` read as `/`, never leaving the
root), the seeded split carving for lists without a test part, `--limit`, and the margin
within which a point outside the image is a real label (`outside_image`).
"""
from dataclasses import dataclass, field
import math
import os

import numpy as np

SPLITS = ("train", "val", "test")
SPLIT_CHOICES = ("official", "random")
FORMATS = ("celeba", "mtfl", "sun")
FORMAT_CHOICES = ("auto",) + FORMATS
DEFAULT_TRAIN_FRACTION = 0.8  # the article's share; val and test share the rest
DEFAULT_VAL_FRACTION = {"celeba": 0.0, "mtfl": 0.1, "sun": 0.1}  # --split random on CelebA: the article's 80/20

# A point may lie outside the image by up to this fraction of the image's width (x) or height
# (y): a face cut by the frame is a real label (MTFL's 80x80 copy has y down to -7.5, 9.4%
# of the side; 97 of its 10,000 faces have such a point). Further out is taken for a broken
# annotation and skipped.
LAYOUT_FILES = {"celeba": "list_landmarks_celeba.txt or list_landmarks_align_celeba.txt",
                "mtfl": "training.txt", "sun": "trainImageList.txt"}

OUTSIDE_MARGIN = 0.10
OUTSIDE_KIND = "point outside the image"
OUTSIDE_NOTE = "point outside the image, within the margin (kept)"


class DataError(Exception):
    """A fatal problem with the input: nothing sensible can be built."""


@dataclass(frozen=True)
class Problem:
    """One skipped item: what kind (for counting), details, and where."""
    kind: str
    detail: str
    file: str
    line: int = 0
    name: str = ""

    def __str__(self):
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.name + ': ' if self.name else ''}{self.kind}" + (f" ({self.detail})" if self.detail else "")

    def as_dict(self):
        return {"kind": self.kind, "detail": self.detail, "file": self.file, "line": self.line, "name": self.name}


@dataclass(frozen=True)
class Entry:
    """One annotated image: its name (a path relative to the image folder, '/'-separated), its
    five (x, y) points in original pixels, its split, the list file and line it came from, and
    its face box (left, top, right, bottom) in original pixels when the list gives one."""
    name: str
    points: np.ndarray
    split: str
    line: int
    source: str = ""
    box: tuple = None


@dataclass
class Dataset:
    root: str
    variant: str  # CelebA's wild|align; "" for the list layouts
    image_dir: str
    landmark_file: str  # the main list (CelebA's landmark file, training.txt, trainImageList.txt)
    partition_file: str  # CelebA's partition file or the lists' test list; "" when there is none
    entries: list  # Entry, list order within each split
    problems: list = field(default_factory=list)
    header_count: int = -1  # the count line of CelebA's landmark file, -1 when absent
    warnings: list = field(default_factory=list)  # not skips: things worth a look
    format: str = "celeba"
    split_record: dict = field(default_factory=dict)  # how the splits were made (for the manifest)

    def image_path(self, name):
        return os.path.join(self.image_dir, *name.split("/"))

    def split(self, split):
        return [e for e in self.entries if e.split == split]

    @property
    def has_boxes(self):
        return bool(self.entries) and all(e.box is not None for e in self.entries)


# ---- list files -----------------------------------------------------------------------

def read_text_lines(path):
    """The lines of a landmark list; a UTF-8 byte-order mark is not part of the first name."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            return fh.read().splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


def is_number(token):
    try:
        float(token)
        return True
    except ValueError:
        return False


# ---- names ----------------------------------------------------------------------------

def unsafe_name(name):
    """Why a CelebA image name must not be used, or '' when it is a plain file name."""
    if not name or name in (".", ".."):
        return "empty or dot name"
    if "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        return "path separator in name"
    if "\0" in name:
        return "NUL in name"
    return ""


def list_path(raw):
    """(name, why) for a path from an MTFL or Sun list: `\\` read as `/`; `why` is '' for a
    relative path that stays under the image folder, else the reason it is refused."""
    name = raw.replace("\\", "/")
    if "\0" in name:
        return name, "NUL in name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return name, "absolute path"
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return name, "empty, '.' or '..' path component"
    return name, ""


def unsafe_path(name):
    """Why a name in a predictions file must not be used ('' when it is fine): a relative
    '/'-separated path that stays under the image folder (plain CelebA names are such paths)."""
    if "\\" in name:
        return "backslash in name"
    return list_path(name)[1]


# ---- points ---------------------------------------------------------------------------

def outside_image(points, width, height, margin=OUTSIDE_MARGIN):
    """0 when every point is inside the image, 1 when some lie outside but within `margin`
    (a fraction of the width for x, of the height for y: kept), 2 when one lies further out
    (skipped). The one place that decides which labels outside the image are real."""
    points = np.asarray(points, dtype=np.float64)
    x, y = points[..., 0], points[..., 1]
    if np.all(x >= 0) and np.all(y >= 0) and np.all(x <= width - 1) and np.all(y <= height - 1):
        return 0
    mx, my = margin * width, margin * height
    if np.all(x >= -mx) and np.all(y >= -my) and np.all(x <= width - 1 + mx) and np.all(y <= height - 1 + my):
        return 1
    return 2


# ---- splits ---------------------------------------------------------------------------

def check_fractions(train_fraction, val_fraction):
    if not (0 < train_fraction <= 1 and 0 <= val_fraction and train_fraction + val_fraction <= 1 + 1e-9):
        raise DataError(f"bad fractions: train {train_fraction}, val {val_fraction}")


def carve(count, seed, train_fraction, val_fraction):
    """Split names for `count` items: a seeded permutation, `train_fraction` train,
    `val_fraction` val, the rest test."""
    order = np.random.default_rng(seed).permutation(count)
    n_train = int(round(train_fraction * count))
    n_val = min(int(round(val_fraction * count)), count - n_train)
    split_of = np.empty(count, dtype=object)
    split_of[order[:n_train]] = "train"
    split_of[order[n_train:n_train + n_val]] = "val"
    split_of[order[n_train + n_val:]] = "test"
    return list(split_of)


def limit_entries(entries, limit):
    """At most `limit` entries in all, shared among the splits in proportion to their sizes
    (each non-empty split keeps at least one), the first ones of each split in list order,
    so that a quick run still has a test set."""
    if limit is None or limit >= len(entries):
        return entries
    by_split = {s: [e for e in entries if e.split == s] for s in SPLITS}
    total = len(entries)
    keep = {s: max(1, math.floor(limit * len(v) / total)) if v else 0 for s, v in by_split.items()}
    # hand out what rounding left, largest split first
    for s in sorted(SPLITS, key=lambda s: -len(by_split[s])):
        while sum(keep.values()) < limit and keep[s] < len(by_split[s]):
            keep[s] += 1
    chosen = {id(e) for s in SPLITS for e in by_split[s][:keep[s]]}
    return [e for e in entries if id(e) in chosen]


def split_counts(entries):
    return {s: sum(e.split == s for e in entries) for s in SPLITS}


# ---- the interface --------------------------------------------------------------------

def _readers():
    from data_prep import celeba, mtfl, sun  # the readers import this module: imported late

    return {"celeba": celeba, "mtfl": mtfl, "sun": sun}


def detect(root):
    """The layout of a dataset root, from the files present; `DataError` when there is none
    or several."""
    if not os.path.isdir(root):
        raise DataError(f"{root}: no such dataset folder")
    found = [fmt for fmt, reader in _readers().items() if reader.present(root)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(f"{root}: no dataset found (looked for CelebA's {LAYOUT_FILES['celeba']}, "
                        f"MTFL's {LAYOUT_FILES['mtfl']}, Sun et al.'s {LAYOUT_FILES['sun']})")
    raise DataError(f"{root}: holds several layouts ({', '.join(found)}); choose one with "
                    "--dataset-format (make: DATASET=)")


def format_choice(text):
    """argparse type of --dataset-format: one of FORMAT_CHOICES; '' (an empty make variable) is auto."""
    import argparse

    text = text or "auto"
    if text not in FORMAT_CHOICES:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(FORMAT_CHOICES)}, got {text!r}")
    return text


def resolve_format(root, fmt="auto"):
    """The layout to read: `fmt` itself, or the detected one for 'auto' (or '')."""
    if fmt in ("auto", "", None):
        return detect(root)
    if fmt not in FORMATS:
        raise DataError(f"dataset format must be one of {FORMAT_CHOICES}, got {fmt!r}")
    if not os.path.isdir(root):
        raise DataError(f"{root}: no such dataset folder")
    if not _readers()[fmt].present(root):
        raise DataError(f"{root}: not in the {fmt} layout (no {LAYOUT_FILES[fmt]}); the files present "
                        "decide the layout when --dataset-format (make: DATASET=) is left out")
    return fmt


def input_files(root, fmt="auto", variant="wild", split="official"):
    """{role: path} of the text files a build from this root depends on."""
    fmt = resolve_format(root, fmt)
    return _readers()[fmt].input_files(root, variant=variant, split=split)


def image_folder(root, fmt="auto", variant="wild"):
    """Where a root's images are: CelebA's image folder, or the root itself for the lists."""
    fmt = resolve_format(root, fmt)
    if fmt == "celeba":
        from data_prep import celeba

        return celeba.locate(root, variant)[0]
    return os.path.abspath(root)


def load(root, fmt="auto", variant="wild", split="official", train_fraction=DEFAULT_TRAIN_FRACTION,
         val_fraction=None, seed=0, limit=None, errata=True):
    """Read a dataset root of any layout into a `Dataset`, with the known label errors of
    published data sets fixed where they are found (`data_prep.errata`; errata=False: as given).

    split="official": CelebA's partition file; for the lists, their test list when there is
    one (val carved from the training list) or else val and test carved from the training
    list. split="random": every entry of every list carved with the seed. `val_fraction`
    None: the layout's default (CelebA 0, the article's 80/20; the lists 0.1, so 80/10/10)."""
    fmt = resolve_format(root, fmt)
    if split not in SPLIT_CHOICES:
        raise DataError(f"split must be one of {SPLIT_CHOICES}, got {split!r}")
    if val_fraction is None:
        val_fraction = DEFAULT_VAL_FRACTION[fmt]
    check_fractions(train_fraction, val_fraction)
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be at least 1, got {limit}")
    data = _readers()[fmt].load(root, variant=variant, split=split, train_fraction=train_fraction,
                                val_fraction=val_fraction, seed=seed, limit=limit)
    if errata:
        from data_prep import errata as known_errors
        from landmarks.images import ImageError, probe

        def image_size(entry):
            try:
                return probe(data.image_path(entry.name))[:2]
            except ImageError:
                return 0, 0  # the build names and skips it

        known_errors.apply(data, image_size)
    return data
