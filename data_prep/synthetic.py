"""Owns the built-in synthetic CelebA: drawn faces with exact landmarks, in CelebA's layout.

  python -m data_prep.synthetic --out data/synthetic --count 5000 --seed 1

writes
  DIR/Img/img_celeba/000001.jpg ...        (6-digit names, like CelebA's)
  DIR/Anno/list_landmarks_celeba.txt       (count; column names; `name x1 y1 ... x5 y5`, integers)
  DIR/Eval/list_eval_partition.txt         (`name 0|1|2`: the first 80% train, next 10% val, rest test)
  DIR/synthetic.json                       (the arguments and a summary; written last)

Each face (data_prep.face_model) is a head ellipsoid turned by yaw, pitch and roll and
projected orthographically, so the five points (eye centres, nose tip, mouth corners) are exact, and yaw or pitch moves the
nose and mouth against the eyes the way a real head does. Every point is marked by a dark dot
on a lighter face (pupil, nose-tip mark, mouth-corner marks) so that a label can be checked
against the pixels. Images vary like CelebA's in-the-wild set: 150 to 1000 px sides, mixed
aspect ratios, faces covering about 5% to 80% of the image, cluttered backgrounds, lighting
gradients, blur, sensor noise and JPEG quality 40 to 95. About 2% are "noisy" (a large black
band, never over all five points), and one image in every 200 has both eyes annotated on the
same pixel (CelebA has such annotation errors); its drawing is still correct.

The face itself (its geometry, drawing and exact points) is data_prep.face_model; this module
puts one in a scene. Other modules use render_sample(seed, i) (dataset image i, before JPEG)
and generate (the whole dataset on disk).

Image i depends only on (seed, i): the same seed gives the same bytes whatever the count or
the number of worker processes (for one OpenCV build, whose JPEG encoder writes the bytes).
"""
import argparse
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from data_prep import parallel
from data_prep.face_model import FaceParams, draw_face, ellipse, face_box, face_points, scaled
from landmarks.common import checks
from landmarks.common.progress import bar as progress_bar
from landmarks.conventions.labels import NUM_POINTS, as_rows

VERSION = 1  # bump when a change alters the images or labels a seed produces
IMAGE_DIR = Path("Img") / "img_celeba"
LANDMARKS_FILE = Path("Anno") / "list_landmarks_celeba.txt"
PARTITION_FILE = Path("Eval") / "list_eval_partition.txt"
STAMP_FILE = "synthetic.json"
LANDMARK_HEADER = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
                   "leftmouth_x leftmouth_y rightmouth_x rightmouth_y")
assert len(LANDMARK_HEADER.split()) == 2 * NUM_POINTS  # CelebA's columns are our point order
SPLIT_FRACTIONS = (0.8, 0.1)  # train, val; the rest is test (CelebA's split is contiguous too)
MERGED_EYES_PERIOD = 200  # one annotation in each block of 200 puts both eyes on one pixel
NOISY_PERIOD = 50  # one image in each block of 50 gets a large black area (2%)

_AA = cv2.LINE_AA
GAIN_ONE = 128.0  # lighting gains are stored in uint8 with 128 meaning 1.0 (so at most ~2)
NOISE_UNIT = 16.0  # the noise tile's standard deviation in its uint8 units


# ---- scenes: one random face in a cluttered, lit, blurred, noisy image -------------------

@dataclass
class Sample:
    """One rendered dataset image: the picture before JPEG, true points, the written label."""
    index: int  # 0-based; the file is f"{index + 1:06d}.jpg"
    image: np.ndarray  # BGR uint8, before JPEG compression
    points: np.ndarray  # (5, 2) float: the drawn landmarks
    label: np.ndarray  # (5, 2) int: what the annotation file says (rounded; eyes may be merged)
    jpeg_quality: int
    params: FaceParams
    noisy: bool = False  # a large black area was painted over part of the image
    merged_eyes: bool = False  # the annotation puts both eyes on one pixel (a deliberate error)

    @property
    def name(self):
        return image_name(self.index)

    def jpeg(self):
        ok, data = cv2.imencode(".jpg", self.image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {self.name}")
        return data.tobytes()


def image_name(index):
    """CelebA-style file name of the 0-based index."""
    return f"{index + 1:06d}.jpg"


def _flagged(seed, index, period, salt):
    # Exactly one index per block of `period`, chosen from (seed, block): a fixed rate that
    # does not depend on the count, and at least one hit once a whole block is generated.
    block_rng = np.random.default_rng([seed, index // period, salt])
    return index % period == int(block_rng.integers(period))


@lru_cache(maxsize=1)
def _noise_tile():
    # One fixed tile of Gaussian noise (128 + NOISE_UNIT * N(0, 1) in uint8), cropped at random
    # offsets: fresh random numbers for every pixel would cost more than the rest of a render.
    noise = np.random.default_rng(0).standard_normal((1024, 1024, 3), dtype=np.float32)
    return np.clip(128 + NOISE_UNIT * noise, 0, 255).astype(np.uint8)


def _colour(rng, low=0, high=256):
    return tuple(float(c) for c in rng.integers(low, high, 3))


def _clutter(image, rng, count):
    h, w = image.shape[:2]
    side = max(w, h)
    for _ in range(count):
        colour, kind = _colour(rng), int(rng.integers(5))
        x, y = int(rng.uniform(-0.1, 1.1) * w), int(rng.uniform(-0.1, 1.1) * h)
        size = max(2, int(side * rng.uniform(0.02, 0.35)))
        thick = int(rng.choice([-1, -1, 1, 2, 3, 6]))
        if kind == 0:
            cv2.rectangle(image, (x, y), (x + size, y + int(size * rng.uniform(0.2, 2))), colour, thick)
        elif kind == 1:
            cv2.circle(image, (x, y), size // 2, colour, thick, _AA)
        elif kind == 2:
            cv2.ellipse(image, (x, y), (size // 2, max(1, size // 5)), float(rng.uniform(0, 180)),
                        0, 360, colour, thick, _AA)
        elif kind == 3:
            end = (x + int(rng.normal(0, side / 3)), y + int(rng.normal(0, side / 3)))
            cv2.line(image, (x, y), end, colour, max(1, abs(thick)), _AA)
        else:
            tri = (np.array([x, y]) + rng.integers(-size, size + 1, (3, 2))).astype(np.int32)
            cv2.fillPoly(image, [tri], colour, _AA)


def _sample_face(rng, width, height):
    """Random FaceParams for a width x height image: pose, size, position, colours."""
    roll = float(np.clip(rng.normal(0, 10), -30, 30) if rng.random() < 0.9 else rng.uniform(-30, 30))
    yaw = float(np.clip(rng.normal(0, 12), -35, 35))
    pitch = float(np.clip(rng.normal(0, 8), -25, 25))
    tone = rng.random()  # 0 = lightest skin, 1 = darkest
    skin = np.array([190, 210, 240]) * (1 - tone) + np.array([45, 65, 100]) * tone + rng.uniform(-12, 12, 3)
    skin = tuple(float(c) for c in np.clip(skin, 0, 255))
    lips = (skin[0] * 0.7, skin[1] * 0.6, min(255.0, skin[2] * 0.95 + 10))
    params = FaceParams(
        center=(0.0, 0.0), half_width=1.0, roll=roll, yaw=yaw, pitch=pitch, skin=skin,
        hair=_colour(rng, 10, 120), lips=lips, iris=_colour(rng, 20, 110),
        eye_x=float(rng.uniform(0.36, 0.43)), eye_y=float(rng.uniform(-0.2, -0.1)),
        nose_y=float(rng.uniform(0.15, 0.25)), mouth_y=float(rng.uniform(0.45, 0.55)),
        mouth_half_width=float(rng.uniform(0.24, 0.34)), long_hair=bool(rng.random() < 0.5),
        glasses=bool(rng.random() < 0.12))
    # Size: the head's box covers a log-uniform 5%..80% of the image, as far as it fits.
    x0, y0, x1, y1 = face_box(params)
    unit_w, unit_h = x1 - x0, y1 - y0
    fraction = math.exp(rng.uniform(math.log(0.05), math.log(0.8)))
    a = math.sqrt(fraction * width * height / (unit_w * unit_h))
    a = max(9.0, min(a, 0.98 * min(width / unit_w, height / unit_h)))
    # Position: anywhere with the box inside; one in ten may spill over an edge a little.
    spill = rng.uniform(0.0, 0.25) if rng.random() < 0.1 else 0.0
    centre = []
    for extent, half in ((width, a * unit_w / 2), (height, a * unit_h / 2)):
        margin = half * (1 - spill)
        centre.append(rng.uniform(margin, extent - margin) if 2 * margin < extent else extent / 2)
    params = replace(params, center=tuple(centre), half_width=a)
    # The labels must lie in the image even when the head does not.
    pts = face_points(params)
    low, high = pts.min(axis=0), pts.max(axis=0)
    limit = np.array([width - 3.0, height - 3.0])
    shift = np.maximum(0.0, 2.0 - low) - np.maximum(0.0, high - limit)
    return replace(params, center=tuple(float(c) for c in np.asarray(centre) + shift))


def _black_out(image, points, rng):
    """Paint a large black band from one edge, stopping short of the farthest point."""
    h, w = image.shape[:2]
    (xmin, ymin), (xmax, ymax) = points.min(axis=0), points.max(axis=0)
    allowed = np.array([(xmax - 3) / w, (w - 4 - xmin) / w, (ymax - 3) / h, (h - 4 - ymin) / h])
    good = np.flatnonzero(allowed >= 0.3)
    side = int(rng.choice(good)) if good.size else int(np.argmax(allowed))
    depth = max(0.0, min(allowed[side], rng.uniform(0.3, 0.7)))
    if side == 0:
        image[:, :int(depth * w)] = 0
    elif side == 1:
        image[:, w - int(depth * w):] = 0
    elif side == 2:
        image[:int(depth * h)] = 0
    else:
        image[h - int(depth * h):] = 0


def render_sample(seed, index):
    """Render dataset image `index` (0-based) of the dataset with this seed, deterministically."""
    rng = np.random.default_rng([seed, index])
    width = int(round(math.exp(rng.uniform(math.log(150), math.log(1000)))))
    height = int(np.clip(round(width * math.exp(rng.uniform(math.log(0.6), math.log(1.7)))), 150, 1000))
    params = _sample_face(rng, width, height)
    a = params.half_width
    # Background: a colour gradient with soft blotches (drawn small, resized once), then
    # random shapes and lines.
    gh, gw = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    corners = rng.uniform(20, 235, (2, 2, 3)).astype(np.float32)
    small = cv2.resize(corners, (gw, gh), interpolation=cv2.INTER_LINEAR) + rng.uniform(-45, 45, (gh, gw, 3))
    small = np.clip(small, 0, 255).astype(np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    _clutter(image, rng, int(rng.integers(5, 40)))
    # Shoulders and neck below the head (upright in the roll frame, like a body).
    roll = math.radians(params.roll)
    down = np.array([-math.sin(roll), math.cos(roll)])
    cx, cy = params.center
    body = (cx + down[0] * 2.9 * a, cy + down[1] * 2.9 * a)
    ellipse(image, body, (2.3 * a, 1.5 * a), params.roll, _colour(rng))
    neck = (cx + down[0] * 1.4 * a, cy + down[1] * 1.4 * a)
    ellipse(image, neck, (0.5 * a, 0.9 * a), params.roll, scaled(params.skin, 0.85))
    points = draw_face(image, params)
    # Camera: blur, lighting gradient with a colour cast, sensor noise. All in uint8 with
    # one saturating cv2 pass each: float copies of large images cost more than the drawing.
    if rng.random() < 0.5:
        # Blur scales with the face so that small faces are not erased (they are small already).
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, min(2.5, 0.3 + 0.03 * a)))
    light = rng.uniform(0.55, 1.25) * rng.uniform(0.9, 1.1, 3)
    theta, strength = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 0.5)
    u = np.array([-0.75, -0.25, 0.25, 0.75])  # the 4 source pixel centres, in [-1, 1] image units
    ramp = 1.0 + strength * (u[None, :] * math.cos(theta) + u[:, None] * math.sin(theta))
    gain = np.clip(ramp[:, :, None] * light * GAIN_ONE, 0, 255).astype(np.uint8)
    gain = cv2.resize(gain, (width, height), interpolation=cv2.INTER_LINEAR)
    image = cv2.multiply(image, gain, scale=1.0 / GAIN_ONE)
    sigma = rng.uniform(0, 8)
    oy, ox = int(rng.integers(0, 1025 - height)), int(rng.integers(0, 1025 - width))
    tile = _noise_tile()[oy:oy + height, ox:ox + width]
    image = cv2.addWeighted(image, 1.0, tile, sigma / NOISE_UNIT, -128.0 * sigma / NOISE_UNIT)
    quality = int(rng.integers(40, 96))
    noisy = _flagged(seed, index, NOISY_PERIOD, 2)
    if noisy:
        _black_out(image, points, rng)
    label = np.rint(points).astype(np.int64)
    merged = _flagged(seed, index, MERGED_EYES_PERIOD, 1)
    if merged:
        label[:2] = label[int(rng.integers(2))]  # both eyes annotated on one eye's pixel
    return Sample(index, image, points, label, quality, params, noisy, merged)


# ---- the dataset on disk -----------------------------------------------------------------

def write_samples(out_dir, count, seed=0):
    """Writes `count` synthetic CelebA-like JPEGs to out_dir without the dataset's lists (a few
    faces to time or try a model on); their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        sample = render_sample(seed, index)
        path = out_dir / sample.name
        path.write_bytes(sample.jpeg())
        paths.append(str(path))
    return paths


def partition(count):
    """CelebA-style split of count images: 0 train, 1 val, 2 test, in contiguous runs."""
    n_train = int(count * SPLIT_FRACTIONS[0] + 0.5)
    n_val = int(count * SPLIT_FRACTIONS[1] + 0.5)
    return [0] * n_train + [1] * n_val + [2] * (count - n_train - n_val)


def _render_range(job):
    """Worker: render and write images [start, stop); return their labels and flags."""
    out_dir, seed, start, stop = job
    rows = []
    for index in range(start, stop):
        sample = render_sample(seed, index)
        (Path(out_dir) / IMAGE_DIR / sample.name).write_bytes(sample.jpeg())
        rows.append((index, as_rows(sample.label).tolist(), sample.noisy, sample.merged_eyes))
    return rows


def _render_all(out_dir, count, seed, workers, progress):
    chunk = max(1, min(64, count // (4 * workers) or 1))
    jobs = [(str(out_dir), seed, s, min(count, s + chunk)) for s in range(0, count, chunk)]
    if workers == 1:
        parts = map(_render_range, jobs)
    else:
        parts = parallel.imap(_render_range, jobs, workers)
    rows = []
    with progress_bar(total=count, desc="synthetic CelebA", unit="img", file=sys.stderr,
                      disable=not progress or count < 500, mininterval=0.5) as bar:
        for part in parts:
            rows += part
            bar.update(len(part))
    return sorted(rows)


def _read_stamp(out_dir):
    try:
        return json.loads((Path(out_dir) / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None


def generate(out_dir, count, seed, workers=None, progress=True, force=False):
    """Write a synthetic CelebA of `count` images to out_dir; return a summary dict.

    The dataset is built in `<out_dir>.partial` and renamed into place when complete, so an
    interrupted run never leaves a complete-looking out_dir. If out_dir already holds a
    finished dataset with the same count, seed and generator version, nothing is done (the
    summary says skipped) unless force. An existing out_dir that is not a synthetic dataset
    (no stamp) and not empty is refused rather than replaced.
    """
    out_dir, count, seed = Path(out_dir), int(count), int(seed)
    if count < 1:
        raise ValueError("count must be at least 1")
    args = {"generator": "data_prep.synthetic", "version": VERSION, "count": count, "seed": seed}
    stamp = _read_stamp(out_dir)
    if stamp and stamp.get("args") == args and not force:
        return {**stamp["summary"], "skipped": True}
    if out_dir.exists() and stamp is None and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not a synthetic CelebA; refusing to replace it")
    started = time.time()
    workers = workers or parallel.available_cores()
    # A process for fewer than 16 images costs more to start than it saves.
    workers = max(1, min(int(workers), math.ceil(count / 16)))
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        return _generate_into(partial, out_dir, count, seed, workers, progress, args, started)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a full disk must not stay full of a half dataset
        raise


def _generate_into(partial, out_dir, count, seed, workers, progress, args, started):
    (partial / IMAGE_DIR).mkdir(parents=True)
    rows = _render_all(partial, count, seed, workers, progress)
    split = partition(count)
    names = [image_name(i) for i in range(count)]
    (partial / LANDMARKS_FILE).parent.mkdir(parents=True)
    lines = [str(count), LANDMARK_HEADER]
    lines += [" ".join([names[i]] + [str(v) for v in row]) for i, row, _, _ in rows]
    (partial / LANDMARKS_FILE).write_text("\n".join(lines) + "\n")
    (partial / PARTITION_FILE).parent.mkdir(parents=True)
    (partial / PARTITION_FILE).write_text("".join(f"{n} {s}\n" for n, s in zip(names, split)))
    summary = {
        "out_dir": str(out_dir), "count": count, "seed": seed,
        "partition": {"train": split.count(0), "val": split.count(1), "test": split.count(2)},
        "noisy": [names[i] for i, _, noisy, _ in rows if noisy],
        "merged_eyes": [names[i] for i, _, _, merged in rows if merged],
        "seconds": round(time.time() - started, 2), "skipped": False,
    }
    stamp = {"args": args, "opencv": cv2.__version__, "summary": summary}
    (partial / STAMP_FILE).write_text(json.dumps(stamp, indent=1) + "\n")
    # Swap in the finished folder; the old one (a previous synthetic run, or empty) goes last.
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    partial.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return summary


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.synthetic", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Rerunning with the same --out, --count and --seed over a finished dataset does\n"
               "nothing (DIR/synthetic.json records them); --force regenerates. The dataset is\n"
               "built in DIR.partial and renamed to DIR only when complete, so an interrupted run\n"
               "leaves no DIR (or the previous one). A DIR that is not a synthetic dataset is refused.")
    parser.add_argument("--out", required=True, help="dataset folder to write (CelebA layout)")
    parser.add_argument("--count", type=int, required=True, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, help="worker processes (default: one per available core)")
    parser.add_argument("--force", action="store_true", help="regenerate even if DIR is up to date")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        summary = generate(args.out, args.count, args.seed, workers=args.workers,
                           progress=not args.quiet, force=args.force)
    except (ValueError, FileExistsError) as exc:
        print(f"data_prep.synthetic: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if not checks.is_disk_error(exc):
            raise
        print(f"data_prep.synthetic: error: {checks.disk_message(exc, args.out)}", file=sys.stderr)
        return 2
    if summary["skipped"]:
        print(f"{args.out}: up to date ({summary['count']} images, seed {summary['seed']})")
    else:
        part = summary["partition"]
        print(f"{args.out}: {summary['count']} images (train {part['train']}, val {part['val']}, "
              f"test {part['test']}; {len(summary['noisy'])} noisy, {len(summary['merged_eyes'])} "
              f"with merged eyes) in {summary['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
