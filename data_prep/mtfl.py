"""Owns reading the MTFL face set (`training.txt` + image folders, e.g. ../shared/data/mtfl) and
the fixed split the deployment checks use on it.

A line is `path x1..x5 y1..y5` (all x first), optionally with a leading space, backslashes in
the path and four extra integer columns (the original MTFL files). Points come back as
(5, 2) arrays in CelebA's order, which MTFL shares. Lines with a bad field count, numbers that
are not numbers or unsafe paths ('..', absolute) raise DataError naming the file and line.

Split (deterministic, no seed to record): in file order, every VAL_EVERY-th image (index % 10
== 0) is validation; calibration images come from the others, in file order.
"""
from pathlib import Path

import numpy as np

from data_prep.celeba import DataError
from landmarks.labels import NUM_POINTS

LANDMARK_FILE = "training.txt"
VAL_EVERY = 10  # 10% validation: 1,000 of MTFL's 10,000 images


def read_mtfl(root):
    """[(image path, (5, 2) points)] of an MTFL folder, in file order."""
    root = Path(root)
    path = root / LANDMARK_FILE
    if not path.is_file():
        raise DataError(f"{path}: no such file (an MTFL folder holds training.txt and the image folders)")
    samples = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (1 + 2 * NUM_POINTS, 5 + 2 * NUM_POINTS):
            raise DataError(f"{path}:{number}: {len(fields)} fields, expected {1 + 2 * NUM_POINTS} (or 4 more)")
        name = fields[0].replace("\\", "/")
        if name.startswith("/") or ".." in name.split("/"):
            raise DataError(f"{path}:{number}: unsafe image path {name!r}")
        try:
            values = np.array([float(v) for v in fields[1:1 + 2 * NUM_POINTS]])
        except ValueError:
            raise DataError(f"{path}:{number}: a coordinate is not a number") from None
        samples.append((str(root / name), np.stack([values[:NUM_POINTS], values[NUM_POINTS:]], axis=-1)))
    if not samples:
        raise DataError(f"{path}: no samples")
    return samples


def split(samples, calibration=256, validation=None):
    """(validation samples, calibration samples): see the module docstring. `validation`
    limits the validation split to its first N (None: all)."""
    val = [s for i, s in enumerate(samples) if i % VAL_EVERY == 0][:validation]
    rest = [s for i, s in enumerate(samples) if i % VAL_EVERY != 0][:calibration]
    return val, rest
