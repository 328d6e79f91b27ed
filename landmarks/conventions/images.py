"""Owns the input convention: image decoding and the network-input preprocessing (mean,
resize, reading an image for a level), for training data (data_prep) AND every inference
backend (landmarks.runtime.inference, landmarks.runtime.backends).

It lives in `landmarks`, not `data_prep`, because the runtime needs it and `landmarks` must
not import `data_prep`. Everything that turns an image file into a network input goes
through here, so that the training sets, the predict step and each runtime can never disagree:

- `read_bgr(path, min_side, region)` (= `decode(open_image(path), ...)`) decodes a JPEG at
  the largest OpenCV reduction (`IMREAD_REDUCED_COLOR_2/4/8`) that still leaves `min_side`
  pixels across `region` (the whole image for level 1, the crop for level 2); other formats
  are decoded at full size (OpenCV would decode them fully and resize anyway). The file is
  read once; the original size comes from its header (a JPEG's frame header, parsed here,
  or PIL for other formats), and a JPEG without its end marker is refused as truncated.
  Grey-scale and 4-channel images come back as 3-channel BGR.
- `render(...)` maps a box of the original image (plus an optional affine transform inside
  it, for augmentation) onto an S x S uint8 BGR patch, exactly, whatever the decode
  reduction was. `level1_pixels` / `level2_pixels` are its two uses; `level1_input` /
  `level2_input` add the released models' normalisation (CHW float32, minus 127.5).
- `read_level1(path)` / `read_level2(path, box)`: file to network input in one call, with
  the reduction chosen for that level; what the predict step calls on original images.

Geometry: a box (x0, y0, x1, y1) is half-open in original pixels; pixel centres are at
integer coordinates. Libjpeg's reduced pixel r covers original pixels [f*r, f*r + f), so
its centre is at f*(r + 0.5) - 0.5. The patch maps the box's edges onto the patch's edges
(as cv2.resize does), so an original point p lands at (q + 0.5) * S / box_w - 0.5 with
q = p - x0 (see `frame_to_output`).
"""
import io

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

MEAN_VALUE = 127.5  # the released models subtract 127.5 on every channel and do not scale
DEFAULT_SIZE = 48
JPEG_FACTORS = (8, 4, 2, 1)  # the reductions libjpeg does for free, largest first
_REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
                  4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
# Landmarks refer to the stored pixel grid (PIL's header size does not apply EXIF rotation
# either), so OpenCV must not rotate the image.
_DECODE_FLAGS = cv2.IMREAD_IGNORE_ORIENTATION
_JPEG_TAIL = 512  # bytes searched for the end-of-image marker


class ImageError(Exception):
    """An image that cannot be used; `kind` is a short category for counting."""

    def __init__(self, kind, path, detail=""):
        self.kind, self.path, self.detail = kind, path, detail
        super().__init__(f"{path}: {kind}" + (f" ({detail})" if detail else ""))


class Decoded(tuple):
    """`(image, (orig_w, orig_h))`, so `image, (w, h) = read_bgr(path)` works, plus `.factor`
    (the decode reduction: 1, 2, 4 or 8) and `.mode` (the file's colour mode, e.g. 'L')."""

    def __new__(cls, image, size, factor=1, mode="RGB"):
        self = super().__new__(cls, (image, (int(size[0]), int(size[1]))))
        self.factor, self.mode = int(factor), mode
        return self

    @property
    def image(self):
        return self[0]

    @property
    def size(self):
        return self[1]


class Encoded:
    """An image file read into memory with its header parsed: `data` (bytes), `width`,
    `height`, `mode` ('RGB', 'L', 'CMYK', 'RGBA', ...), `format` ('JPEG', 'PNG', ...)."""
    __slots__ = ("path", "data", "width", "height", "mode", "format")

    def __init__(self, path, data, width, height, mode, fmt):
        self.path, self.data, self.width, self.height, self.mode, self.format = path, data, width, height, mode, fmt

    @property
    def header(self):
        return self.width, self.height, self.mode, self.format


# Start-of-frame markers (baseline, extended, progressive, lossless...); C4, C8, CC are not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}


def _jpeg_header(data):
    """(width, height, mode) from a JPEG's start-of-frame segment, or None if there is none
    before the image data. A few microseconds, against ~35 for PIL.Image.open."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length field
            pos += 2
            continue
        length = (data[pos + 2] << 8) | data[pos + 3]
        if marker in _SOF_MARKERS:
            if pos + 10 > n:
                return None
            height = (data[pos + 5] << 8) | data[pos + 6]
            width = (data[pos + 7] << 8) | data[pos + 8]
            return width, height, _JPEG_MODES.get(data[pos + 9], f"{data[pos + 9]}-component")
        if marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def open_image(path):
    """Read an image file and its header (no decoding); ImageError if it is missing, empty,
    not an image, or a JPEG cut short."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ImageError("missing image", path) from None
    except IsADirectoryError:
        raise ImageError("missing image", path, "a folder") from None
    except OSError as exc:
        raise ImageError("unreadable image", path, exc.strerror) from None
    if not data:
        raise ImageError("zero-byte file", path)
    if data[:2] == b"\xff\xd8":
        header = _jpeg_header(data)
        if header is None or min(header[:2]) < 1:
            raise ImageError("corrupt image", path, "no valid JPEG frame header")
        # Libjpeg pads a truncated file with grey and OpenCV returns it without an error; a
        # complete JPEG ends with the EOI marker (0xFFD9 cannot occur in entropy-coded data).
        if b"\xff\xd9" not in data[-_JPEG_TAIL:]:
            raise ImageError("truncated JPEG", path, "no end-of-image marker")
        return Encoded(path, data, header[0], header[1], header[2], "JPEG")
    try:
        with Image.open(io.BytesIO(data)) as im:
            return Encoded(path, data, im.size[0], im.size[1], im.mode, im.format)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError("corrupt image", path, str(exc)) from None


def probe(path):
    """(width, height, mode, format) from the header, without decoding; ImageError if the
    file is missing, empty or not an image."""
    return open_image(path).header


def reduction_factor(region_w, region_h, min_side, allowed=JPEG_FACTORS):
    """The largest allowed factor f with region_w / f >= min_side and region_h / f >= min_side."""
    if not min_side:
        return 1
    for f in allowed:
        if region_w / f >= min_side and region_h / f >= min_side:
            return f
    return 1


def decode(encoded, min_side=None, region=None):
    """Decode an `Encoded` as uint8 BGR, reduced as far as keeps `min_side` pixels across
    `region` ((w, h) in original pixels; default the whole image). Returns a `Decoded`."""
    width, height, path = encoded.width, encoded.height, encoded.path
    factor = 1
    if encoded.format == "JPEG":
        region_w, region_h = region if region is not None else (width, height)
        factor = reduction_factor(region_w, region_h, min_side)
    # other formats are never reduced: OpenCV would decode them fully and resize anyway
    try:
        image = cv2.imdecode(np.frombuffer(encoded.data, np.uint8), _REDUCED_FLAGS[factor] | _DECODE_FLAGS)
    except cv2.error as exc:  # e.g. over OpenCV's pixel limit
        raise ImageError("corrupt image", path, str(exc).strip().splitlines()[-1]) from None
    if image is None:
        raise ImageError("corrupt image", path, "OpenCV could not decode it")
    expected = (-(-height // factor), -(-width // factor))  # libjpeg rounds reduced sizes up
    if image.shape[:2] != expected:
        raise ImageError("corrupt image", path,
                         f"decoded {image.shape[1]}x{image.shape[0]}, header says {width}x{height} / {factor}")
    return Decoded(image, (width, height), factor, encoded.mode)


def read_bgr(path, min_side=None, region=None):
    """Read and decode `path` as uint8 BGR, reduced as far as keeps `min_side` pixels across
    `region` ((w, h) in original pixels; default the whole image). Returns a `Decoded`:
    `image, (orig_w, orig_h) = read_bgr(path, 48)`, plus `.factor` and `.mode`."""
    return decode(open_image(path), min_side, region)


def _as_decoded(image, scale=None):
    """Accept a `Decoded`, or a plain H x W x 3 array decoded at reduction `scale` (default 1)."""
    if isinstance(image, Decoded):
        return image
    image = np.asarray(image)
    f = int(scale or 1)
    # Only level 2 accepts a reduced plain array: its box fixes the geometry, the original
    # size is not needed (this estimate of it is unused there).
    return Decoded(image, (image.shape[1] * f, image.shape[0] * f), f)


def frame_matrix(box, size, transform=None):
    """2x3 affine: original pixel-centre coordinates -> patch pixel-centre coordinates, for a
    box (x0, y0, x1, y1) and an optional 2x3 `transform` acting in the box's own pixel-centre
    frame (origin at its top-left pixel) before the box is scaled to size x size."""
    x0, y0, x1, y1 = (float(v) for v in box)
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    to_box = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], dtype=np.float64)
    inside = np.eye(3)
    if transform is not None:
        inside[:2] = transform
    to_patch = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], dtype=np.float64)
    return (to_patch @ inside @ to_box)[:2]


def frame_to_output(points, frame_w, frame_h, size):
    """Pixel points in a frame (box) of frame_w x frame_h -> pixel points of its size x size patch."""
    points = np.asarray(points, dtype=np.float64)
    scale = np.array([size / frame_w, size / frame_h])
    return (points + 0.5) * scale - 0.5


def _padded_slice(image, x, y, size, edge=False):
    """image[y:y+size, x:x+size], zero outside the image (its nearest edge pixel with `edge`)."""
    h, w = image.shape[:2]
    if edge:
        rows, cols = np.clip(np.arange(y, y + size), 0, h - 1), np.clip(np.arange(x, x + size), 0, w - 1)
        return image[rows[:, None], cols[None, :]]
    out = np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    xa, ya, xb, yb = max(x, 0), max(y, 0), min(x + size, w), min(y + size, h)
    if xb > xa and yb > ya:
        out[ya - y:yb - y, xa - x:xb - x] = image[ya:yb, xa:xb]
    return out


def render(image, matrix, size, edge=False):
    """The size x size uint8 patch whose pixel u shows original point p where
    u = matrix @ [p, 1] (`frame_matrix`). `image` is a `Decoded` or a full-resolution array.

    Downscaling goes through cv2.INTER_AREA (bilinear on a 10x shrink would alias); what
    remains (a sub-pixel shift, a rotation, an enlargement) is one bilinear warpAffine,
    skipped when it is a whole-pixel shift. Outside the image is black, or with `edge` the
    image's nearest edge pixel (a margin without a frame line, for augmentation)."""
    decoded = _as_decoded(image)
    img, f = decoded.image, decoded.factor
    # reduced pixel-centre coordinates -> original pixel-centre coordinates
    unreduce = np.array([[f, 0, 0.5 * f - 0.5], [0, f, 0.5 * f - 0.5], [0, 0, 1]], dtype=np.float64)
    full = np.vstack([matrix, [0, 0, 1]]) @ unreduce  # reduced -> patch
    linear = full[:2, :2]
    # How far one reduced pixel along x (along y) moves in the patch: below 1 is a shrink.
    fx = min(1.0, float(np.hypot(*linear[:, 0])))
    fy = min(1.0, float(np.hypot(*linear[:, 1])))
    # The part of the reduced image the patch can see, plus a margin for the filters.
    inverse = np.linalg.inv(full)
    corners = np.array([[-0.5, -0.5, 1], [size - 0.5, -0.5, 1], [-0.5, size - 0.5, 1], [size - 0.5, size - 0.5, 1]])
    seen = (inverse @ corners.T)[:2]
    margin = 2 + int(np.ceil(2 / min(fx, fy)))
    h, w = img.shape[:2]
    cx0 = max(0, int(np.floor(seen[0].min())) - margin)
    cy0 = max(0, int(np.floor(seen[1].min())) - margin)
    if linear[0, 1] == 0 and linear[1, 0] == 0:
        # Axis-aligned box whose edge falls on a reduced pixel edge (always so at full decode):
        # cut there, so that the shrink alone lands on the patch grid and no bilinear shift
        # follows (a plain crop + INTER_AREA resize).
        ex, ey = seen[0].min() + 0.5, seen[1].min() + 0.5  # the box's edges, reduced edge coords
        if abs(ex - round(ex)) < 1e-9 and round(ex) >= 0:
            cx0 = int(round(ex))
        if abs(ey - round(ey)) < 1e-9 and round(ey) >= 0:
            cy0 = int(round(ey))
    cx1 = min(w, int(np.ceil(seen[0].max())) + margin + 1)
    cy1 = min(h, int(np.ceil(seen[1].max())) + margin + 1)
    if cx1 <= cx0 or cy1 <= cy0:  # the patch sees none of the image
        if edge:  # the nearest edge region, so that the margin still repeats the picture's edge
            cx0, cx1 = (w - 1, w) if cx0 >= w else (0, 1) if cx1 <= 0 else (cx0, cx1)
            cy0, cy1 = (h - 1, h) if cy0 >= h else (0, 1) if cy1 <= 0 else (cy0, cy1)
        else:
            return np.zeros((size, size, 3), dtype=np.uint8)
    cut = img[cy0:cy1, cx0:cx1]
    shrink = np.array([[fx, 0, fx * (0.5 - cx0) - 0.5], [0, fy, fy * (0.5 - cy0) - 0.5], [0, 0, 1]])
    if fx < 1.0 or fy < 1.0:
        # fx/fy given (not dsize) so that OpenCV uses exactly this scale; the output size is
        # rounded, which only matters past the region we keep.
        cut = cv2.resize(cut, None, fx=fx, fy=fy, interpolation=cv2.INTER_AREA)
    warp = (full @ np.linalg.inv(shrink))[:2]
    shift = np.round(warp[:, 2])
    if np.allclose(warp[:, :2], np.eye(2), atol=1e-9) and np.allclose(warp[:, 2], shift, atol=1e-6):
        return _padded_slice(cut, -int(shift[0]), -int(shift[1]), size, edge)
    return cv2.warpAffine(cut, warp, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE if edge else cv2.BORDER_CONSTANT, borderValue=0)


def to_network(pixels):
    """uint8 S x S x 3 BGR patch(es) -> float32 (..., 3, S, S) minus the mean, as the nets see it."""
    pixels = np.asarray(pixels)
    return (np.moveaxis(pixels, -1, -3).astype(np.float32) - np.float32(MEAN_VALUE))


def level1_pixels(image, size=DEFAULT_SIZE):
    """The whole image resized to size x size (aspect ratio not kept), uint8 BGR."""
    decoded = _as_decoded(image)
    w, h = decoded.size
    fx, fy = size * decoded.factor / w, size * decoded.factor / h
    if fx <= 1.0 and fy <= 1.0:
        # What `render` does for this case (one exact-scale INTER_AREA shrink of the whole
        # image, then the top-left S x S), without its per-call matrix work: this is the hot
        # path of level-1 data preparation.
        return _padded_slice(cv2.resize(decoded.image, None, fx=fx, fy=fy, interpolation=cv2.INTER_AREA), 0, 0, size)
    return render(decoded, frame_matrix((0, 0, w, h), size), size)


def level2_pixels(image, box, size=DEFAULT_SIZE, scale=None):
    """The crop `box` ((x0, y0, x1, y1) in ORIGINAL pixels, e.g. a landmarks.conventions.crop.CropBox,
    whose `transform`, when it has one, turns the content inside the box) resized to
    size x size, uint8 BGR. `image` is a `Decoded` (its reduction is known) or an array
    decoded at reduction `scale` (default 1: full size)."""
    return render(_as_decoded(image, scale), frame_matrix(_box_tuple(box), size, getattr(box, "transform", None)),
                  size)


def level1_input(image, size=DEFAULT_SIZE):
    """Level-1 network input: float32 (3, S, S), BGR minus 127.5."""
    return to_network(level1_pixels(image, size))


def level2_input(image, box, size=DEFAULT_SIZE, scale=None):
    """Level-2 network input for a crop box in original pixels: float32 (3, S, S)."""
    return to_network(level2_pixels(image, box, size, scale))


def _box_tuple(box):
    if hasattr(box, "x0"):
        return (box.x0, box.y0, box.x1, box.y1)
    return tuple(box)


def in_memory(image):
    """A BGR image array already decoded (a video frame, a photo read once for all its faces) as
    a source that read_level1 / read_level2 take in place of a path."""
    return image if isinstance(image, Decoded) else _as_decoded(np.ascontiguousarray(image))


def read_level1(path, size=DEFAULT_SIZE):
    """Decode (reduced as far as level 1 allows) and preprocess: float32 (3, S, S), and the
    original (w, h). `path` may also be an `in_memory` image."""
    decoded = path if isinstance(path, Decoded) else read_bgr(path, min_side=size)
    return level1_input(decoded, size), decoded.size


def read_level2(path, box, size=DEFAULT_SIZE):
    """Decode (reduced as far as this crop allows) and preprocess: float32 (3, S, S), and the
    original (w, h). The reduction depends on the crop's size, not the image's. `path` may also
    be an `in_memory` image."""
    x0, y0, x1, y1 = _box_tuple(box)
    decoded = path if isinstance(path, Decoded) else read_bgr(path, min_side=size, region=(x1 - x0, y1 - y0))
    return level2_input(decoded, box, size), decoded.size
