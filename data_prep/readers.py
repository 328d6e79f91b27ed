"""Owns the table of dataset readers and the one way to open a dataset root, whatever its layout.

Layouts, one reader module each, all read into the same data_prep.dataset `Dataset`:
    celeba  data_prep.celeba   Img/, Anno/list_landmarks_celeba.txt, Eval/list_eval_partition.txt
    mtfl    data_prep.mtfl     training.txt (+ testing.txt): path x1..x5 y1..y5 [4 attributes]
    sun     data_prep.sun      trainImageList.txt (+ testImageList.txt): path l r t b x1 y1 ... x5 y5
`detect(root)` names the layout from the files present; `load(root, fmt)` reads any of them;
`input_files(root, fmt)` gives the text files a build depends on (its manifest key). Each
reader module offers the same three functions, `present(root)`, `input_files(root, variant,
split)` and `load(root, variant, split, train_fraction, val_fraction, seed, limit)` (the list
layouts ignore `variant`), and nothing else is called from outside. A new layout is one reader
module and one row of READERS.
"""
import argparse
import os

from data_prep import celeba, mtfl, sun
from data_prep import errata as known_errors
from data_prep.dataset import (DEFAULT_TRAIN_FRACTION, DEFAULT_VAL_FRACTION, FORMAT_CHOICES, FORMATS, LAYOUT_FILES,
                               SPLIT_CHOICES, DataError, check_fractions)
from landmarks.conventions.images import ImageError, probe

READERS = {"celeba": celeba, "mtfl": mtfl, "sun": sun}


def detect(root):
    """The layout of a dataset root, from the files present; `DataError` when there is none
    or several."""
    if not os.path.isdir(root):
        raise DataError(f"{root}: no such dataset folder")
    found = [fmt for fmt, reader in READERS.items() if reader.present(root)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(f"{root}: no dataset found (looked for CelebA's {LAYOUT_FILES['celeba']}, "
                        f"MTFL's {LAYOUT_FILES['mtfl']}, Sun et al.'s {LAYOUT_FILES['sun']})")
    raise DataError(f"{root}: holds several layouts ({', '.join(found)}); choose one with "
                    "--dataset-format (make: DATASET=)")


def format_choice(text):
    """argparse type of --dataset-format: one of FORMAT_CHOICES; '' (an empty make variable) is auto."""
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
    if not READERS[fmt].present(root):
        raise DataError(f"{root}: not in the {fmt} layout (no {LAYOUT_FILES[fmt]}); the files present "
                        "decide the layout when --dataset-format (make: DATASET=) is left out")
    return fmt


def input_files(root, fmt="auto", variant="wild", split="official"):
    """{role: path} of the text files a build from this root depends on."""
    fmt = resolve_format(root, fmt)
    return READERS[fmt].input_files(root, variant=variant, split=split)


def image_folder(root, fmt="auto", variant="wild"):
    """Where a root's images are: CelebA's image folder, or the root itself for the lists."""
    fmt = resolve_format(root, fmt)
    if fmt == "celeba":
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
    data = READERS[fmt].load(root, variant=variant, split=split, train_fraction=train_fraction,
                                val_fraction=val_fraction, seed=seed, limit=limit)
    if errata:
        def image_size(entry):
            try:
                return probe(data.image_path(entry.name))[:2]
            except ImageError:
                return 0, 0  # the build names and skips it

        known_errors.apply(data, image_size)
    return data
