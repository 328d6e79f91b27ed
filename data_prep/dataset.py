"""Owns the one dataset record that everything downstream uses, whatever the layout on disk: a
`Dataset` of `Entry`s, which every reader (data_prep.celeba, .mtfl, .sun) returns and
data_prep.readers hands out. It imports no reader, so the readers import it freely.

It also owns what the readers share: the `Problem` a bad line or image becomes
(named with file:line, counted, skipped), `DataError` for fatal input, the rules for names
(CelebA: a plain file name; lists: a relative path, `\\` read as `/`, never leaving the
root), the seeded split carving for lists without a test part, `--limit`, and the margin
within which a point outside the image is a real label (`outside_image`).
"""
import math
import os
from dataclasses import dataclass, field

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
