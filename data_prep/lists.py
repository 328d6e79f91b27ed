"""Owns what the two image-list layouts (MTFL, Sun et al.) share: reading a list file line by
line into (name, points, line, box) rows with every bad line a `Problem`, finding the lists
in a root, and turning a training list and an optional test list into a `Dataset` with its
splits (carved with the seed where no test list exists) and the record of how they were made.

A layout module (data_prep.mtfl, data_prep.sun) gives only its file names and a function that
turns one line's fields after the path into (points (5, 2), box or None) or raises
`BadLine(kind, detail)`.
"""
import os

import numpy as np

from data_prep.dataset import (DataError, Dataset, Entry, Problem, carve, is_number, limit_entries, list_path,
                               read_text_lines, split_counts)
from landmarks.conventions.labels import NUM_POINTS


class BadLine(ValueError):
    def __init__(self, kind, detail=""):
        super().__init__(kind)
        self.kind, self.detail = kind, detail


def numbers(fields):
    """The fields as finite floats, or `BadLine` naming the first that is not."""
    try:
        values = np.array([float(t) for t in fields], dtype=np.float64)
    except ValueError:
        bad = next(t for t in fields if not is_number(t))
        raise BadLine("non-numeric value", repr(bad)) from None
    if not np.all(np.isfinite(values)):
        raise BadLine("non-numeric value", "not finite")
    return values


def read_list(path, parse_fields):
    """([(name, points (5, 2), line, box)], [Problem]) from one list file. Leading and
    trailing white space is ignored, `\\` in paths is read as `/`; a line is refused (and
    named) for a bad path, a field count or value `parse_fields` rejects, or a repeated name."""
    rows, problems, seen = [], [], {}
    for number, text in enumerate(read_text_lines(path), start=1):
        fields = text.split()
        if not fields:
            continue
        name, why = list_path(fields[0])
        if why:
            problems.append(Problem("unsafe image name", why, path, number, fields[0]))
            continue
        try:
            points, box = parse_fields(fields[1:])
        except BadLine as bad:
            problems.append(Problem(bad.kind, bad.detail, path, number, name))
            continue
        if name in seen:
            problems.append(Problem("duplicate name", f"first on {seen[name]}", path, number, name))
            continue
        seen[name] = f"{os.path.basename(path)}:{number}"
        rows.append((name, np.asarray(points, dtype=np.float64).reshape(NUM_POINTS, 2), number, box))
    return rows, problems


def find(root, name):
    """ROOT/name when it is a file, else ''."""
    path = os.path.join(root, name)
    return path if os.path.isfile(path) else ""


def input_files(root, train_name, test_name):
    train = find(root, train_name)
    if not train:
        raise DataError(f"{root}: no {train_name}")
    return {"train_list": train, "test_list": find(root, test_name)}


def load(root, fmt, train_name, test_name, parse_fields, split, train_fraction, val_fraction, seed, limit):
    """A `Dataset` from ROOT/train_name (+ ROOT/test_name when present); image paths are
    relative to ROOT. See `data_prep.readers.load` for the split rules."""
    if not os.path.isdir(root):
        raise DataError(f"{root}: no such dataset folder")
    root = os.path.abspath(root)
    files = input_files(root, train_name, test_name)
    train_file, test_file = files["train_list"], files["test_list"]
    train_rows, problems = read_list(train_file, parse_fields)
    test_rows = []
    if test_file:
        test_rows, test_problems = read_list(test_file, parse_fields)
        problems += test_problems
        known = {r[0]: r[2] for r in train_rows}
        both = [r for r in test_rows if r[0] in known]
        problems += [Problem("in both lists", f"{os.path.basename(train_file)}:{known[r[0]]}", test_file, r[2], r[0])
                     for r in both]
        test_rows = [r for r in test_rows if r[0] not in known]
    tagged = [(r, train_file) for r in train_rows] + [(r, test_file) for r in test_rows]
    if split == "official" and test_rows:
        # the test list is the test split; val is carved from the training list, train:val kept
        share = train_fraction / (train_fraction + val_fraction) if train_fraction + val_fraction else 1.0
        splits = carve(len(train_rows), seed, share, 1.0 - share) + ["test"] * len(test_rows)
        record = {"method": "test list; val carved from the training list", "seed": seed,
                  "train_share_of_training_list": round(share, 6)}
    else:
        splits = carve(len(tagged), seed, train_fraction, val_fraction)
        record = {"method": "carved from " + (" and ".join(os.path.basename(f) for f in (train_file, test_file) if f)),
                  "seed": seed, "train_fraction": train_fraction, "val_fraction": val_fraction,
                  "test_fraction": round(1 - train_fraction - val_fraction, 6)}
    entries = [Entry(name, points, s, line, source, box)
               for ((name, points, line, box), source), s in zip(tagged, splits)]
    entries = limit_entries(entries, limit)
    if not entries:
        first = f" ({len(problems)} problems, first: {problems[0]})" if problems else ""
        raise DataError(f"{train_file}: no usable entries{first}")
    record["counts"] = split_counts(entries)
    return Dataset(root, "", root, train_file, test_file, entries, problems, -1, [], fmt, record)
