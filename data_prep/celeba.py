"""Owns reading CelebA as distributed: where its files are, parsing them, and the splits.

Layout (either variant; `--variant wild|align`):
    ROOT/Img/img_celeba/            ROOT/Anno/list_landmarks_celeba.txt
    ROOT/Img/img_align_celeba/      ROOT/Anno/list_landmarks_align_celeba.txt
    ROOT/Eval/list_eval_partition.txt
Each file is also found directly under ROOT (a flattened copy), and the images too.

The landmark file may keep or drop its two header lines (the count, the column names).
Bad lines are never fatal: each becomes a `Problem` naming the file and line, and the entry
is left out. Fatal conditions (no landmark file, no image folder, nothing usable) raise
`DataError`. Image names are refused unless they are a plain file name (no path separator,
not `.` or `..`), so that nothing outside the image folder is ever read. A UTF-8 byte-order
mark at the start of a file is not part of its first name.
"""
import os

import numpy as np

from data_prep.dataset import (SPLIT_CHOICES, SPLITS, DataError, Dataset, Entry, Problem, carve, check_fractions,  # noqa: F401 (re-exported)
                               is_number, limit_entries, read_text_lines, split_counts, unsafe_name)
from landmarks.conventions.labels import NUM_POINTS

VARIANTS = {
    "wild": ("img_celeba", "list_landmarks_celeba.txt"),
    "align": ("img_align_celeba", "list_landmarks_align_celeba.txt"),
}
PARTITION_FILE = "list_eval_partition.txt"
PARTITION_CODES = {"0": "train", "1": "val", "2": "test"}


def _first_existing(candidates, want_dir):
    for path in candidates:
        if (os.path.isdir(path) if want_dir else os.path.isfile(path)):
            return path
    return ""


def locate(root, variant="wild"):
    """(image folder, landmark file, partition file or '') for a CelebA root."""
    if variant not in VARIANTS:
        raise DataError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    if not os.path.isdir(root):
        raise DataError(f"{root}: no such dataset folder")
    root = os.path.abspath(root)
    image_folder, landmark_name = VARIANTS[variant]
    landmarks = _first_existing([os.path.join(root, "Anno", landmark_name), os.path.join(root, landmark_name)], False)
    if not landmarks:
        raise DataError(f"{root}: no {landmark_name} (looked in Anno/ and in the root)")
    images = _first_existing([os.path.join(root, "Img", image_folder), os.path.join(root, image_folder)], True)
    if not images:
        # fully flattened: the images themselves beside the annotation files
        images = root if any(n.lower().endswith((".jpg", ".jpeg", ".png")) for n in os.listdir(root)) else ""
    if not images:
        raise DataError(f"{root}: no image folder Img/{image_folder}/ (nor {image_folder}/, nor images in the root)")
    partition = _first_existing([os.path.join(root, "Eval", PARTITION_FILE), os.path.join(root, PARTITION_FILE)], False)
    return images, landmarks, partition


def read_landmarks(path):
    """([(name, points (5, 2), line)], [Problem], header count or -1). Header lines are
    recognised (a lone integer, then a line of non-numeric column names) and optional."""
    lines = read_text_lines(path)
    rows, problems, seen = [], [], {}
    header_count, start = -1, 0
    first = [(i, ln.split()) for i, ln in enumerate(lines[:2])]
    if first and len(first[0][1]) == 1 and first[0][1][0].isdigit():
        header_count, start = int(first[0][1][0]), 1
    if len(lines) > start and len(lines[start].split()) == 2 * NUM_POINTS and \
            not any(is_number(t) for t in lines[start].split()):
        start += 1  # the column-name line
    expected = 1 + 2 * NUM_POINTS
    for number, text in enumerate(lines[start:], start=start + 1):
        fields = text.split()
        if not fields:
            continue
        name = fields[0]
        if len(fields) != expected:
            problems.append(Problem("wrong number of fields", f"{len(fields)}, expected {expected}", path, number, name))
            continue
        why = unsafe_name(name)
        if why:
            problems.append(Problem("unsafe image name", why, path, number, name))
            continue
        try:
            values = np.array([float(t) for t in fields[1:]], dtype=np.float64)
        except ValueError:
            bad = next(t for t in fields[1:] if not is_number(t))
            problems.append(Problem("non-numeric value", repr(bad), path, number, name))
            continue
        if not np.all(np.isfinite(values)):
            problems.append(Problem("non-numeric value", "not finite", path, number, name))
            continue
        if name in seen:
            problems.append(Problem("duplicate name", f"first on line {seen[name]}", path, number, name))
            continue
        seen[name] = number
        rows.append((name, values.reshape(NUM_POINTS, 2), number))
    return rows, problems, header_count


def read_partition(path):
    """({name: (split, line)}, [Problem]) from list_eval_partition.txt (`name 0|1|2`)."""
    lines = read_text_lines(path)
    splits, problems = {}, []
    for number, text in enumerate(lines, start=1):
        fields = text.split()
        if not fields:
            continue
        name = fields[0]
        if len(fields) != 2:
            problems.append(Problem("wrong number of fields", f"{len(fields)}, expected 2", path, number, name))
        elif fields[1] not in PARTITION_CODES:
            problems.append(Problem("bad partition value", f"{fields[1]!r}, expected 0, 1 or 2", path, number, name))
        elif name in splits:
            problems.append(Problem("duplicate name", f"first on line {splits[name][1]}", path, number, name))
        else:
            splits[name] = (PARTITION_CODES[fields[1]], number)
    return splits, problems


def present(root):
    """True when ROOT holds a CelebA landmark file of either variant (data_prep.readers.detect)."""
    return any(os.path.isfile(os.path.join(root, sub, landmarks)) for _, landmarks in VARIANTS.values()
               for sub in ("Anno", ""))


def input_files(root, variant="wild", split="official"):
    """{role: path} of the text files a build depends on."""
    _, landmark_file, partition_file = locate(root, variant)
    return {"landmarks": landmark_file, "partition": partition_file if split == "official" else ""}


def load(root, variant="wild", split="official", train_fraction=0.8, val_fraction=0.0, seed=0, limit=None):
    """Read a CelebA root into a `Dataset` (entries in CelebA order, each with its split).

    split="official": Eval/list_eval_partition.txt; images on one list only are problems.
    split="random": the article's split, a seeded permutation: `train_fraction` train,
    `val_fraction` val, the rest test (the partition file is not read)."""
    if split not in SPLIT_CHOICES:
        raise DataError(f"split must be one of {SPLIT_CHOICES}, got {split!r}")
    check_fractions(train_fraction, val_fraction)
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be at least 1, got {limit}")
    image_dir, landmark_file, partition_file = locate(root, variant)
    rows, problems, header_count = read_landmarks(landmark_file)
    warnings = []
    if header_count >= 0 and header_count != len(rows) + len(problems):
        # Not a skipped item: the entries are all there to read; the count is only a hint.
        warnings.append(f"{landmark_file}:1: the count line says {header_count}, "
                        f"the file has {len(rows) + len(problems)} entries")
    entries = []
    if split == "official":
        if not partition_file:
            raise DataError(f"{root}: no {PARTITION_FILE} (looked in Eval/ and in the root); "
                            "give it, or use --split random")
        partition, part_problems = read_partition(partition_file)
        problems += part_problems
        refused = {p.name for p in part_problems}  # already counted once, for their partition line
        annotated = set()
        for name, points, line in rows:
            annotated.add(name)
            if name not in partition and name in refused:
                continue
            if name not in partition:
                problems.append(Problem("not in the partition file", os.path.basename(partition_file),
                                        landmark_file, line, name))
                continue
            entries.append(Entry(name, points, partition[name][0], line, landmark_file))
        # an image whose landmark line was bad is reported once, for that line
        reported = {p.name for p in problems if p.file == landmark_file}
        for name, (_, line) in partition.items():
            if name not in annotated and name not in reported:
                problems.append(Problem("not in the landmark file", os.path.basename(landmark_file),
                                        partition_file, line, name))
        record = {"method": f"official ({os.path.basename(partition_file)})"}
    else:
        partition_file = ""
        split_of = carve(len(rows), seed, train_fraction, val_fraction)
        entries = [Entry(name, points, split_of[i], line, landmark_file) for i, (name, points, line) in enumerate(rows)]
        record = {"method": "random", "seed": seed, "train_fraction": train_fraction, "val_fraction": val_fraction,
                  "test_fraction": round(1 - train_fraction - val_fraction, 6)}
    entries = limit_entries(entries, limit)
    if not entries:
        raise DataError(f"{landmark_file}: no usable entries" + (f" ({len(problems)} problems, first: {problems[0]})" if problems else ""))
    record["counts"] = split_counts(entries)
    return Dataset(os.path.abspath(root), variant, image_dir, landmark_file, partition_file, entries,
                   problems, header_count, warnings, "celeba", record)
