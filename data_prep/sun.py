"""Owns reading Sun et al.'s lists (CVPR 2013; also MTCNN's and deep-landmark's):
ROOT/trainImageList.txt and, when present, ROOT/testImageList.txt, one line per image:

    path left right top bottom x1 y1 x2 y2 x3 y3 x4 y4 x5 y5

a face box, then the five points interleaved (CelebA's order), paths relative to ROOT with
`\\` or `/`. The box is kept on each entry (left, top, right, bottom): it gives the
box-normalised error those papers report. No test list: val and test are carved from the
training list with the seed (data_prep.lists).
"""
import os

from data_prep import lists
from landmarks.conventions.labels import NUM_POINTS

TRAIN_LIST = "trainImageList.txt"
TEST_LIST = "testImageList.txt"


def parse_fields(fields):
    """(points (5, 2), box) from the fields after the path."""
    expected = 4 + 2 * NUM_POINTS
    if len(fields) != expected:
        raise lists.BadLine("wrong number of fields", f"{len(fields) + 1}, expected {expected + 1}")
    values = lists.numbers(fields)
    left, right, top, bottom = values[:4]
    if not (right > left and bottom > top):
        raise lists.BadLine("bad face box", f"left {left:g} right {right:g} top {top:g} bottom {bottom:g}")
    return values[4:].reshape(NUM_POINTS, 2), (float(left), float(top), float(right), float(bottom))


def present(root):
    return os.path.isfile(os.path.join(root, TRAIN_LIST))


def input_files(root, variant="wild", split="official"):
    return lists.input_files(root, TRAIN_LIST, TEST_LIST)


def load(root, variant="wild", split="official", train_fraction=0.8, val_fraction=0.1, seed=0, limit=None):
    return lists.load(root, "sun", TRAIN_LIST, TEST_LIST, parse_fields, split, train_fraction, val_fraction,
                      seed, limit)
