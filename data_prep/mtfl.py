"""Owns reading the MTFL layout (Zhang et al. 2014): ROOT/training.txt and, when present,
ROOT/testing.txt, one line per image:

    path x1 x2 x3 x4 x5 y1 y2 y3 y4 y5 [gender smiling glasses pose]

five x first, then five y (0-based pixels, CelebA's point order), paths relative to ROOT with
`\\` or `/`, lines possibly starting with a space, the four integer attribute columns of the
original files optional (read and not used). No test list: val and test are carved from the
training list with the seed (data_prep.lists).
"""
import os

import numpy as np

from data_prep import lists
from landmarks.conventions.labels import NUM_POINTS

TRAIN_LIST = "training.txt"
TEST_LIST = "testing.txt"
ATTRIBUTES = 4  # gender, smiling, wearing glasses, head pose


def parse_fields(fields):
    """(points (5, 2), None) from the fields after the path."""
    coords = 2 * NUM_POINTS
    if len(fields) not in (coords, coords + ATTRIBUTES):
        raise lists.BadLine("wrong number of fields", f"{len(fields) + 1}, expected {coords + 1} "
                            f"or {coords + ATTRIBUTES + 1} (with the attributes)")
    values = lists.numbers(fields[:coords])
    if len(fields) > coords and not all(t.lstrip("-").isdigit() for t in fields[coords:]):
        raise lists.BadLine("bad attribute column", "expected four integers after the coordinates")
    return np.stack([values[:NUM_POINTS], values[NUM_POINTS:]], axis=1), None


def present(root):
    return os.path.isfile(os.path.join(root, TRAIN_LIST))


def input_files(root, variant="wild", split="official"):
    return lists.input_files(root, TRAIN_LIST, TEST_LIST)


def load(root, variant="wild", split="official", train_fraction=0.8, val_fraction=0.1, seed=0, limit=None):
    return lists.load(root, "mtfl", TRAIN_LIST, TEST_LIST, parse_fields, split, train_fraction, val_fraction,
                      seed, limit)
