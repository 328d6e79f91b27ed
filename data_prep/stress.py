"""A stress copy of one split: every image rotated (up to +-60 degrees by default), maybe
mirrored, greyed, blurred and zoomed out, with its points moved exactly along, as a data set
that `tools/cascade_eval.py --dataset DIR` reads. With --photo, a large-photo copy instead.

    python -m data_prep.stress --dataset ROOT --split val --out DIR [--seed 1]
    python -m data_prep.stress --dataset ROOT --split val --out DIR --photo 0.5 [--upscale 4]
    python -m data_prep.stress --dataset ROOT --split val --out DIR --tight 0.8

The split is the one level 1 uses for the same ROOT and --seed (data_prep's default split).

Why: a validation split drawn from the training photos is mostly frontal and upright, while
the faces a shipped model meets are not. The transforms are `data_prep.augment`'s (the same
code that augments training data, drawn with other settings and another seed), so a label is
exactly where the feature went. Each output image has the source's size; the rotation turns
about the image centre and the zoom-out leaves a black margin, as augmentation does (with
--edge, the picture's edge repeated: the same transforms, without a frame line).

--photo FRACTION: the source photos are loosely cropped faces, while a user's full-resolution
photo may show a face that fills only part of it, anywhere. Each image is enlarged --upscale
times (bicubic: a face with the pixels of a large photo) and set at a seeded random place in
a photo whose sides are 1/FRACTION of the enlarged image's; the margin repeats the picture's
edge (OpenCV's BORDER_REPLICATE), so there is no frame line for a net to find. Nothing else
changes: this copy measures the small, off-centre face alone.

--tight F: each image cut to a square F times the face box a detector of MTCNN's tightness
would draw around its true points (landmarks.conventions.crop.box_from_points), moved by up to
5% of its side; F = 1 is a detector's crop, F = 0.8 cuts a tenth of the box off each side (the
forehead, the chin, the face overflowing the frame), as tightly cropped face sets are.

Output (CelebA's flattened layout, every image in the split marked "test"):
    DIR/img_celeba/<name>.jpg   DIR/list_landmarks_celeba.txt   DIR/list_eval_partition.txt
    DIR/stress.json (the settings and each image's transform)
"""
import argparse
import dataclasses
import os
import sys

import cv2
import numpy as np

from data_prep import augment, readers
from data_prep import dataset as datasets
from landmarks.common.atomic import write_json, write_text
from landmarks.common.progress import bar as progress_bar  # plain lines when not on a terminal
from landmarks.conventions import images
from landmarks.conventions.crop import box_from_points

STRESS = augment.AugmentConfig(copies=1, flip=0.5, rotate=60.0, scale=0.1, shift=0.05, zoom=1.8, rotate_any=0.0,
                               grey=0.3, colour=0.2, blur=0.2)
JPEG_QUALITY = 90


def stress_image(path, points, jitter):
    """(uint8 BGR image of the source's size, its (5, 2) points) for one jitter."""
    decoded = images.read_bgr(path)
    w, h = decoded.size
    box, transform = augment.apply((0, 0, w, h), jitter)
    frame_w, frame_h = box[2] - box[0], box[3] - box[1]
    side = max(w, h)
    pixels = images.render(decoded, images.frame_matrix(box, side, transform), side, edge=jitter.edge)
    pixels = augment.photometric(pixels, jitter)
    moved = augment.frame_points(points, box, transform, flip=jitter.flip)
    moved = images.frame_to_output(moved, frame_w, frame_h, side)
    if (w, h) != (side, side):  # back to the source's shape, points along
        pixels = cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA)
        moved = (moved + 0.5) * np.array([w / side, h / side]) - 0.5
    return pixels, moved


PHOTO_UPSCALE = 4


def photo_frame(width, height, fraction, upscale, place):
    """Where photo_image puts a width x height picture: (left, top, right, bottom) of the enlarged
    picture in the photo (half-open pixels) and the photo's (width, height)."""
    w, h = width * upscale, height * upscale
    margin_x, margin_y = round(w / fraction) - w, round(h / fraction) - h
    left, top = int(round(place[0] * margin_x)), int(round(place[1] * margin_y))
    return (left, top, left + w, top + h), (w + margin_x, h + margin_y)


def photo_image(path, points, fraction, upscale, place):
    """(uint8 BGR photo, its (5, 2) points): the image enlarged `upscale` times, in a photo
    whose sides are 1/`fraction` of that, at `place` = (u, v) in [0, 1]: the share of the
    margin left of and above it; the margin is the picture's edge replicated."""
    if not 0 < fraction <= 1 or upscale < 1:
        raise ValueError(f"photo fraction must be in (0, 1] and upscale >= 1, got {fraction} and {upscale}")
    image = images.read_bgr(path).image
    h, w = image.shape[:2]
    big = cv2.resize(image, (w * upscale, h * upscale), interpolation=cv2.INTER_CUBIC) if upscale > 1 else image
    (left, top, right, bottom), (photo_w, photo_h) = photo_frame(w, h, fraction, upscale, place)
    photo = cv2.copyMakeBorder(big, top, photo_h - bottom, left, photo_w - right, cv2.BORDER_REPLICATE)
    moved = (np.asarray(points, dtype=np.float64).reshape(-1, 2) + 0.5) * upscale - 0.5 + [left, top]
    return photo, moved


TIGHT_SHIFT = 0.05  # a tight crop moves by up to this fraction of its side, each axis


def tight_image(path, points, fraction, shift):
    """(uint8 BGR crop, its (5, 2) points): the square `fraction` of the true face box
    (landmarks.conventions.crop.box_from_points: a detector's box of MTCNN's tightness) about the
    box's centre moved by `shift` (u, v) of its side; where it leaves the picture, the picture's
    edge repeated. Below 1 the crop is inside the box: the face overflows the frame."""
    image = images.read_bgr(path).image
    x0, y0, x1, y1 = box_from_points(points)
    side = max(2, int(round((x1 - x0) * fraction)))
    left = int(round((x0 + x1) / 2 + shift[0] * side - side / 2))
    top = int(round((y0 + y1) / 2 + shift[1] * side - side / 2))
    h, w = image.shape[:2]
    pad = [max(0, -top), max(0, top + side - h), max(0, -left), max(0, left + side - w)]
    padded = cv2.copyMakeBorder(image, *pad, cv2.BORDER_REPLICATE) if any(pad) else image
    crop = padded[top + pad[0]:top + pad[0] + side, left + pad[2]:left + pad[2] + side]
    return np.ascontiguousarray(crop), np.asarray(points, dtype=np.float64).reshape(-1, 2) - [left, top]


def _copy_of(dataset, e, seed, config, photo, upscale, tight):
    """(pixels, points, how it was made) of one entry's copy."""
    if tight is not None:
        shift = np.random.default_rng([seed, e.line]).uniform(-TIGHT_SHIFT, TIGHT_SHIFT, size=2)
        pixels, points = tight_image(dataset.image_path(e.name), e.points, tight, shift)
        return pixels, points, {"shift": [round(float(v), 4) for v in shift]}
    if photo is not None:
        place = np.random.default_rng([seed, e.line]).uniform(0.0, 1.0, size=2)
        pixels, points = photo_image(dataset.image_path(e.name), e.points, photo, upscale, place)
        return pixels, points, {"place": [round(float(v), 4) for v in place]}
    jitter = augment.draw(config, seed, e.line, 1)
    pixels, points = stress_image(dataset.image_path(e.name), e.points, jitter)
    return pixels, points, {"jitter": jitter.describe()}


def write_stress_copy(dataset, split, out, seed, config=STRESS, progress=True, photo=None, upscale=PHOTO_UPSCALE,
                      limit=None, tight=None):
    """Writes the stress copy of `split` (its first `limit` images where given) into `out` (the
    large-photo copy where `photo` is a fraction, the tight-crop copy where `tight` is);
    returns the number of images written. DataError when no image could be copied."""
    entries = dataset.split(split)[:limit]
    if not entries:
        raise datasets.DataError(f"{dataset.root}: the {split} split is empty")
    image_dir = os.path.join(out, "img_celeba")
    os.makedirs(image_dir, exist_ok=True)
    lines, partition, record = [], [], []
    kind = (f"tight ({tight:g} of the face box)" if tight is not None else
            "stress" if photo is None else f"photo ({photo:g} of the side)")
    for number, e in enumerate(progress_bar(entries, desc=f"{kind} copy of {split}", disable=not progress, unit="img"), 1):
        try:
            pixels, points, how = _copy_of(dataset, e, seed, config, photo, upscale, tight)
        except images.ImageError as exc:
            print(f"{dataset.image_path(e.name)}: skipped ({exc})", file=sys.stderr)
            continue
        name = f"{number:06d}.jpg"  # CelebA's style; stress.json maps it to its source
        ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise datasets.DataError(f"{name}: JPEG encoding failed")
        encoded.tofile(os.path.join(image_dir, name))
        lines.append(name + " " + " ".join(f"{v:.2f}" for v in points.reshape(-1)))
        partition.append(f"{name} 2")
        record.append({"name": name, "source": e.name, **how})
    if not lines:
        raise datasets.DataError(f"{dataset.root}: none of the {len(entries)} {split} images could be read; "
                                 "no copy written")
    write_text(os.path.join(out, "list_landmarks_celeba.txt"), "\n".join([str(len(lines))] + lines) + "\n")
    write_text(os.path.join(out, "list_eval_partition.txt"), "\n".join(partition) + "\n")
    settings = ({"tight": tight} if tight is not None else
                {"config": vars(config)} if photo is None else {"photo": photo, "upscale": upscale})
    write_json(os.path.join(out, "stress.json"), {"source": dataset.root, "split": split, "seed": seed,
                                                  **settings, "images": record})
    return len(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data_prep.stress", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--dataset", "--celeba", dest="dataset", required=True, metavar="ROOT",
                        help="the source data set, any layout data_prep reads")
    parser.add_argument("--dataset-format", choices=datasets.FORMAT_CHOICES, default="auto",
                        help="its layout (default: detected from the files present)")
    parser.add_argument("--split", choices=datasets.SPLITS, default="val", help="which split to copy (default: %(default)s)")
    parser.add_argument("--data-split", choices=datasets.SPLIT_CHOICES, default="official",
                        help="how the source's splits are made, as for level 1 (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the split (random) and the transforms (default: 1)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--edge", action="store_true",
                        help="the margins a turn or zoom-out opens repeat the picture's edge instead of black "
                             "(a photo has no frame line for a net to lean on)")
    parser.add_argument("--photo", type=float, default=None, metavar="FRACTION",
                        help="write the large-photo copy instead: each image fills only FRACTION of a photo's "
                             "side, at a random place (see below)")
    parser.add_argument("--tight", type=float, default=None, metavar="F",
                        help="write the tight-crop copy instead: each image cut to F of the face box a detector "
                             "would draw (F < 1: inside it, the face overflows the frame; see below)")
    parser.add_argument("--upscale", type=int, default=PHOTO_UPSCALE,
                        help="--photo: how many times each image is enlarged first (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.photo is not None and not 0 < args.photo <= 1:
        parser.error(f"--photo must be a fraction in (0, 1], got {args.photo}")
    if args.tight is not None and not 0 < args.tight <= 2:
        parser.error(f"--tight must be in (0, 2], got {args.tight}")
    if args.tight is not None and args.photo is not None:
        parser.error("--tight and --photo are two different copies: choose one")
    if args.upscale < 1:
        parser.error(f"--upscale must be >= 1, got {args.upscale}")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        dataset = readers.load(args.dataset, args.dataset_format, split=args.data_split, seed=args.seed)
        config = dataclasses.replace(STRESS, edge=1.0) if args.edge else STRESS
        count = write_stress_copy(dataset, args.split, args.out, args.seed + 1000, config, progress=not args.quiet,
                                  photo=args.photo, upscale=args.upscale, tight=args.tight)
    except datasets.DataError as exc:
        print(f"data_prep.stress: {exc}", file=sys.stderr)
        return 2
    print(f"data_prep.stress: wrote {count} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
