"""Owns predicting the five points of many image files with the cascade (tools/predict.py):
finding the images (files as given, folders searched recursively for JPEG and PNG), running
both levels in batches with a progress bar, the CSV of points it writes, and the drawn copies.

CSV (UTF-8, a header line, then one row per image that could be read, in the order found):
    name,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5
points in original-image pixels, the cascade's (level 2) when it has a level-2 net, else level
1's, in CelebA's point order; `name` is the image's path as given or as found under the folder
given. Images that cannot be read are left out of the CSV and returned as skipped.
"""
import csv
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2

from landmarks.common.atomic import write_text
from landmarks.common.progress import bar as progress_bar  # plain lines when not on a terminal
from landmarks.conventions.draw import annotate
from landmarks.conventions.images import ImageError, read_bgr

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CSV_HEADER = ["name"] + [f"{axis}{i}" for i in range(1, 6) for axis in "xy"]
DEFAULT_BATCH = 64  # images per forward: as cascade_eval's
JPEG_QUALITY = 95  # as tools/demo.py: the drawn colours survive chroma subsampling


class InputError(ValueError):
    """An argument that names no image: one line for the user."""


@dataclass(frozen=True)
class Found:
    path: str  # to read
    name: str  # in the CSV: the path as given, or as found under a folder given
    relative: str  # where its drawing goes under --draw: its path under the folder given, or its file name


def find_images(arguments):
    """[Found] for files and folders (searched recursively, sorted, JPEG and PNG by suffix);
    `InputError` for an argument that does not exist or a folder without images."""
    found = []
    for argument in arguments:
        path = Path(argument)
        if path.is_file():
            found.append(Found(str(path), str(argument), path.name))
        elif path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not inside:
                raise InputError(f"{argument}: no .jpg, .jpeg or .png files in this folder")
            found += [Found(str(p), str(p), str(p.relative_to(path))) for p in inside]
        else:
            raise InputError(f"{argument}: no such file or folder")
    return found


def _both_levels(cascade, paths):
    first, sizes = cascade.level1_batch(paths)
    if cascade.level2 is None:
        return [(p, None, None) for p in first]
    second, boxes = cascade.level2_batch(paths, first, sizes)
    return list(zip(first, second, boxes))


def predict(cascade, images, batch_size=DEFAULT_BATCH, progress=True):
    """([(Found, level-1 points, level-2 points or None, crop box or None)], [(Found, reason)]).
    A batch with an unreadable image is redone image by image, so that it costs only itself."""
    results, skipped = [], []
    with progress_bar(total=len(images), desc="predict", unit="img", file=sys.stderr, disable=not progress) as bar:
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            try:
                results += [(f, *out) for f, out in zip(chunk, _both_levels(cascade, [f.path for f in chunk]))]
            except ImageError:
                for f in chunk:
                    try:
                        results.append((f, *_both_levels(cascade, [f.path])[0]))
                    except ImageError as exc:
                        skipped.append((f, str(exc)))
            bar.update(len(chunk))
    return results, skipped


def csv_text(results):
    """The CSV of `predict`'s results (level 2's points when there are, else level 1's)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for found, first, second, _ in results:
        points = second if second is not None else first
        writer.writerow([found.name] + [f"{v:.4f}" for v in points.reshape(-1)])
    return out.getvalue()


def write_csv(path, results):
    return write_text(path, csv_text(results))


def draw(results, out_dir):
    """Each image with level 1 (red), level 2 (blue) and the crop drawn, under out_dir at its
    path under the folder given (file name for a file given), as <stem>_points.jpg."""
    written = []
    for found, first, second, box in results:
        target = Path(out_dir) / Path(found.relative).parent / f"{Path(found.relative).stem}_points.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        drawn = annotate(read_bgr(found.path).image, level1=first, level2=second, box=box)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}.jpg")
        if not cv2.imwrite(str(tmp), drawn, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"{target}: could not write")
        os.replace(tmp, target)
        written.append(target)
    return written
