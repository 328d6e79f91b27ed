"""Owns predicting the five points of every face in many image files (tools/predict.py): finding
the images (files as given, folders searched recursively for JPEG and PNG), finding the faces
(MTCNN, landmarks.runtime.mtcnn; or, for crops, the whole image as one face), running the
cascade on each face from the region around its box (landmarks.runtime.starts) with a progress
bar, the CSV of points it writes, and the drawn copies.

CSV (UTF-8, a header line, then one row per face, images in the order found, faces by score):
    image,face,score,left,top,right,bottom,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5
`image` is the path as given or as found under the folder given; `face` counts from 1 in the
image; `score` is the detector's (empty for the whole image); the box is the detector's, half-open
original pixels (the whole image for the whole image); the points are in original-image pixels,
the cascade's (level 2) when it has a level-2 net, else level 1's, in CelebA's point order.
Images that cannot be read are left out and returned as skipped; an image without a face has no
row and is returned as faceless.
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
from landmarks.conventions.crop import CropBox
from landmarks.conventions.draw import COLOURS, draw_box, draw_points
from landmarks.conventions.images import ImageError, in_memory, read_bgr
from landmarks.runtime.starts import face_starts

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CSV_HEADER = ["image", "face", "score", "left", "top", "right", "bottom"] + [f"{axis}{i}" for i in range(1, 6)
                                                                             for axis in "xy"]
BOX_COLOUR = (0, 255, 255)  # the detector's box
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


@dataclass
class FacePoints:
    face: int  # 1, 2, ... within its image
    score: object  # the detector's, or None for the whole image
    box: tuple  # (left, top, right, bottom) half-open original pixels
    level1: object  # (5, 2) original pixels
    level2: object  # (5, 2) original pixels, or None without a level-2 net
    crop: object  # the box level 2 saw, or None


def _both_levels(cascade, sources, starts=None):
    first, sizes = cascade.level1_batch(sources, starts)
    if cascade.level2 is None:
        return [(p, None, None) for p in first], sizes
    second, boxes = cascade.level2_batch(sources, first, sizes)
    return list(zip(first, second, boxes)), sizes


def _whole_images(cascade, chunk):
    outputs, sizes = _both_levels(cascade, [f.path for f in chunk])
    return [(f, [FacePoints(1, None, (0, 0, *size), *out)]) for f, out, size in zip(chunk, outputs, sizes)]


def _every_face(cascade, detector, found, max_faces):
    decoded = read_bgr(found.path)
    (width, height), faces = decoded.size, detector.detect(decoded.image, max_faces=max_faces or None)
    if not faces:
        return found, []
    starts = face_starts(faces, width, height)
    outputs, _ = _both_levels(cascade, [in_memory(decoded.image)] * len(faces), starts)
    return found, [FacePoints(i, face.score, face.box, *out) for i, (face, out) in enumerate(zip(faces, outputs), 1)]


def predict(cascade, images, batch_size=DEFAULT_BATCH, progress=True, detector=None, max_faces=0):
    """([(Found, [FacePoints])], [(Found, reason)]). detector: an MTCNN that finds every face (at
    most max_faces, 0: all), or None for the whole image as one face, in batches of images (a
    batch with an unreadable image is redone image by image, so that it costs only itself)."""
    results, skipped = [], []
    with progress_bar(total=len(images), desc="predict", unit="img", file=sys.stderr, disable=not progress) as bar:
        step = batch_size if detector is None else 1
        for start in range(0, len(images), step):
            chunk = images[start:start + step]
            try:
                results += (_whole_images(cascade, chunk) if detector is None else
                            [_every_face(cascade, detector, chunk[0], max_faces)])
            except ImageError:
                for f in chunk:
                    try:
                        results += (_whole_images(cascade, [f]) if detector is None else
                                    [_every_face(cascade, detector, f, max_faces)])
                    except ImageError as exc:
                        skipped.append((f, str(exc)))
            bar.update(len(chunk))
    return results, skipped


def _number(value):
    return "" if value is None else f"{value:.4f}"


def csv_text(results):
    """The CSV of `predict`'s results (level 2's points when there are, else level 1's)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for found, faces in results:
        for f in faces:
            points = f.level2 if f.level2 is not None else f.level1
            writer.writerow([found.name, f.face, _number(f.score), *(f"{v:.2f}" for v in f.box)]
                            + [f"{v:.4f}" for v in points.reshape(-1)])
    return out.getvalue()


def write_csv(path, results):
    return write_text(path, csv_text(results))


def drawn(image, faces):
    """A copy of a BGR image with each face's detector box (yellow, when it came from one), level
    1's points (red), level 2's (blue) and the crop level 2 saw."""
    out = image.copy()
    for f in faces:
        if f.score is not None:
            left, top, right, bottom = (int(round(v)) for v in f.box)
            draw_box(out, CropBox(left, top, right, bottom), BOX_COLOUR)
        if f.crop is not None:
            draw_box(out, f.crop)
        draw_points(out, f.level1, COLOURS["level1"])
        if f.level2 is not None:
            draw_points(out, f.level2, COLOURS["level2"])
    return out


def draw(results, out_dir):
    """Each image with its faces drawn (`drawn`), under out_dir at its path under the folder given
    (file name for a file given), as <stem>_points.jpg."""
    written = []
    for found, faces in results:
        target = Path(out_dir) / Path(found.relative).parent / f"{Path(found.relative).stem}_points.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        image = drawn(read_bgr(found.path).image, faces)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}.jpg")
        if not cv2.imwrite(str(tmp), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"{target}: could not write")
        os.replace(tmp, target)
        written.append(target)
    return written
