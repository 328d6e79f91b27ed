"""landmarks.conventions.images: reduced decode, exact geometry into a reduced image, conversions, bad files."""
import cv2
import numpy as np
import pytest
from PIL import Image

from landmarks.conventions import images


def _dot_image(width, height, points, radius):
    """Black image, a white disc at each point (sub-pixel centres drawn with cv2's shift)."""
    img = np.zeros((height, width, 3), np.uint8)
    for x, y in points:
        cv2.circle(img, (int(round(x * 16)), int(round(y * 16))), int(radius * 16), (255, 255, 255), -1,
                   lineType=cv2.LINE_AA, shift=4)
    return img


def _centroid(patch, near, window=4):
    """Intensity-weighted centroid of the patch around pixel `near`."""
    g = patch.astype(np.float64).mean(axis=2)
    x0, y0 = int(round(near[0])) - window, int(round(near[1])) - window
    xs, ys = np.meshgrid(np.arange(x0, x0 + 2 * window + 1), np.arange(y0, y0 + 2 * window + 1))
    inside = (xs >= 0) & (ys >= 0) & (xs < g.shape[1]) & (ys < g.shape[0])
    w = np.where(inside, g[ys.clip(0, g.shape[0] - 1), xs.clip(0, g.shape[1] - 1)], 0)
    return np.array([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])


@pytest.fixture
def jpeg(tmp_path):
    point = (301.0, 222.0)
    path = tmp_path / "dot.jpg"
    cv2.imwrite(str(path), _dot_image(643, 481, [point], 18), [cv2.IMWRITE_JPEG_QUALITY, 97])
    return path, point


def test_reduction_factor_keeps_the_needed_resolution():
    assert images.reduction_factor(500, 400, 48) == 8  # 62 x 50 still >= 48
    assert images.reduction_factor(300, 200, 48) == 4  # 200 / 8 = 25 < 48, 200 / 4 = 50
    assert images.reduction_factor(95, 400, 48) == 1
    assert images.reduction_factor(500, 400, None) == 1


def test_read_bgr_reduces_jpeg_and_reports_original_size(jpeg):
    path, _ = jpeg
    image, (w, h) = images.read_bgr(path, min_side=48)
    assert (w, h) == (643, 481)
    assert image.shape == (61, 81, 3)  # libjpeg rounds up: ceil(481/8), ceil(643/8)
    assert images.read_bgr(path, min_side=48).factor == 8
    full = images.read_bgr(path)
    assert full.factor == 1 and full.image.shape == (481, 643, 3)
    # level 2: the reduction follows the crop, not the image
    assert images.read_bgr(path, min_side=48, region=(100, 100)).factor == 2


def test_png_is_never_reduced(tmp_path):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.full((400, 500, 3), 90, np.uint8))
    decoded = images.read_bgr(path, min_side=48)
    assert decoded.factor == 1 and decoded.image.shape == (400, 500, 3)


def test_level1_geometry_is_exact_at_every_reduction(jpeg):
    path, point = jpeg
    expected = images.frame_to_output(np.array(point), 643, 481, 48)
    full = images.level1_pixels(images.read_bgr(path))
    reduced = images.level1_pixels(images.read_bgr(path, min_side=48))
    for patch in (full, reduced):
        assert np.abs(_centroid(patch, expected) - expected).max() < 0.1
    # the reduced decode changes the pixels only a little
    assert np.abs(full.astype(int) - reduced).mean() < 2.0
    # and the full-decode path is exactly "resize the whole image" (INTER_AREA)
    whole = cv2.imread(str(path))
    assert np.array_equal(full, cv2.resize(whole, (48, 48), interpolation=cv2.INTER_AREA))


def test_level2_box_maps_into_the_reduced_image(jpeg):
    path, point = jpeg
    box = (203, 117, 411, 325)  # 208 px: decoded at 1/4, edges not on the 4-pixel grid
    expected = images.frame_to_output(np.array(point) - box[:2], 208, 208, 48)
    reduced = images.read_bgr(path, min_side=48, region=(208, 208))
    assert reduced.factor == 4
    patches = [images.level2_pixels(images.read_bgr(path), box), images.level2_pixels(reduced, box),
               images.level2_pixels(reduced.image, box, scale=4)]  # a plain array + its reduction
    for patch in patches:
        assert np.abs(_centroid(patch, expected) - expected).max() < 0.15
    assert np.array_equal(patches[1], patches[2])
    # full decode, box inside the image: exactly the crop resized
    whole = cv2.imread(str(path))
    assert np.array_equal(patches[0], cv2.resize(whole[117:325, 203:411], (48, 48), interpolation=cv2.INTER_AREA))


def test_level1_fast_path_equals_the_general_render(tmp_path):
    rng = np.random.default_rng(0)
    for w, h in ((643, 481), (200, 90), (30, 40)):  # reduced, full, enlarged
        path = tmp_path / f"r{w}.jpg"
        cv2.imwrite(str(path), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        decoded = images.read_bgr(path, min_side=48)
        general = images.render(decoded, images.frame_matrix((0, 0, w, h), 48), 48)
        assert np.array_equal(images.level1_pixels(decoded), general)


def test_edge_margin_repeats_the_picture_edge_and_black_stays_the_default():
    """A box reaching past the picture: black there by default; with edge=True the nearest
    edge pixel, on the whole-pixel path, the shrink path and the turned (warp) path alike,
    and the picture itself unchanged."""
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :, 0] = np.arange(60, dtype=np.uint8)[None, :] * 4  # blue grows to the right
    img[:, :, 1] = np.arange(40, dtype=np.uint8)[:, None] * 6  # green grows downwards
    img[:, :, 2] = 200
    turn = np.array([[0.0, -1.0, 89.0], [1.0, 0.0, 0.0]])  # a quarter turn inside a 90 x 90 box
    for box, size, transform in (((-30, -30, 60, 60), 90, None), ((-30, -30, 60, 60), 45, None),
                                 ((-30, -30, 60, 60), 90, turn)):
        matrix = images.frame_matrix(box, size, transform)
        black = images.render(img, matrix, size)
        edged = images.render(img, matrix, size, edge=True)
        inside = black[..., 2] > 100  # the red channel marks the picture
        assert 0.1 < inside.mean() < 0.9 and not black[~inside].any()
        assert np.array_equal(edged[inside], black[inside])
        assert (edged[..., 2] > 190).all()  # the margin is the picture's own (red 200) edge
        # the margin continues the nearest edge pixel: no picture there is blacker or brighter
        assert edged[..., :2].min() >= 0 and edged[..., 0].max() <= 240 and edged[..., 1].max() <= 240
    corner = images.render(img, images.frame_matrix((-30, -30, 60, 60), 90), 90, edge=True)
    assert (corner[:30, :30] == img[0, 0]).all()  # above-left of the picture: its corner pixel
    assert (corner[70:, 50] == img[39, 20]).all()  # below it (y >= 40): its bottom row


def test_network_input_is_bgr_chw_minus_mean():
    pixels = np.zeros((48, 48, 3), np.uint8)
    pixels[..., 0] = 255  # blue, as OpenCV reads it
    x = images.to_network(pixels)
    assert x.dtype == np.float32 and x.shape == (3, 48, 48)
    assert np.all(x[0] == 127.5) and np.all(x[1] == -127.5)
    assert images.level1_input(np.zeros((100, 80, 3), np.uint8)).shape == (3, 48, 48)


def test_grey_and_four_channel_images_become_bgr(tmp_path):
    grey = tmp_path / "grey.jpg"
    Image.fromarray(np.full((300, 200), 77, np.uint8), "L").save(grey, quality=95)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.full((120, 100, 4), (10, 20, 30, 128), np.uint8), "RGBA").save(rgba)
    g = images.read_bgr(grey, min_side=48)
    assert g.image.shape[2] == 3 and g.mode == "L" and abs(int(g.image[5, 5, 0]) - 77) <= 2
    a = images.read_bgr(rgba)
    assert a.image.shape == (120, 100, 3) and a.mode == "RGBA"
    assert tuple(a.image[0, 0]) == (30, 20, 10)  # RGB -> BGR, alpha dropped


def test_exif_rotation_is_ignored(tmp_path):
    # Landmarks refer to the stored pixels; PIL's header size does not rotate either.
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(np.zeros((100, 300, 3), np.uint8)).save(path, exif=exif)
    image, (w, h) = images.read_bgr(path)
    assert (w, h) == (300, 100) and image.shape[:2] == (100, 300)


@pytest.mark.parametrize("kind", ["missing image", "zero-byte file", "truncated JPEG", "corrupt image"])
def test_bad_files_raise_image_error_with_the_path(tmp_path, jpeg, kind):
    path = tmp_path / "bad.jpg"
    if kind == "zero-byte file":
        path.write_bytes(b"")
    elif kind == "truncated JPEG":
        data = jpeg[0].read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif kind == "corrupt image":
        path.write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 8)
    with pytest.raises(images.ImageError) as info:
        images.read_bgr(path, min_side=48)
    assert info.value.kind == kind and str(path) in str(info.value)


def test_small_crop_is_enlarged_with_the_same_geometry(tmp_path):
    point = (40.3, 31.7)
    path = tmp_path / "small.png"
    cv2.imwrite(str(path), _dot_image(80, 64, [point], 3))
    box = (25, 18, 55, 48)  # 30 px, enlarged to 48
    patch = images.level2_pixels(images.read_bgr(path, min_side=48, region=(30, 30)), box)
    expected = images.frame_to_output(np.array(point) - box[:2], 30, 30, 48)
    assert np.abs(_centroid(patch, expected, window=6) - expected).max() < 0.1
