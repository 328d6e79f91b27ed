"""Owns where the cascade starts on each image (`--boxes`): the whole image (the article's first
look), or the region landmarks.conventions.crop.start_box draws around a face box, the
dataset's (Sun et al.'s lists give them) or MTCNN's (landmarks.runtime.mtcnn, `main_face`). An image where the chosen source has no face, or whose face already fills it as in
level 1's training images (WHOLE_IMAGE_ABOVE), starts from the whole image.
"""
from landmarks.conventions.crop import start_box
from landmarks.conventions.images import ImageError, read_bgr

BOX_SOURCES = ("auto", "none", "dataset", "mtcnn")
AUTO_WITHOUT_BOXES = "mtcnn"  # auto: the dataset's boxes where it gives them, else MTCNN's
# A start region at least this fraction of the image's shorter side: the face already fills the
# picture as in level 1's training images, and the whole image is the start (README, "MTCNN beside us").
WHOLE_IMAGE_ABOVE = 0.8


def resolve(source, has_boxes):
    """The source `auto` stands for (the dataset's boxes where there are, else AUTO_WITHOUT_BOXES);
    ValueError for 'dataset' on a dataset without boxes."""
    if source not in BOX_SOURCES:
        raise ValueError(f"unknown box source {source!r}; choose from {', '.join(BOX_SOURCES)}")
    if source == "auto":
        return "dataset" if has_boxes else AUTO_WITHOUT_BOXES
    if source == "dataset" and not has_boxes:
        raise ValueError("--boxes dataset: this dataset gives no face boxes (Sun et al.'s lists do)")
    return source


def main_face(faces):
    """The face an image is about when it is labelled for one: the most confident, the largest
    among equally confident ones (scores to three decimals; MTCNN gives many faces 1.000). Measured:
    the largest alone picked a background face on 4 of 300 photo copies, the most confident alone
    a background face on one LFW image of MTFL val."""
    return max(faces, key=lambda face: (round(face.score, 3), (face.box[2] - face.box[0]) * (face.box[3] - face.box[1])))


def fills(start, width, height):
    """True when a start region is so large that the whole image is the better start."""
    return start.width >= WHOLE_IMAGE_ABOVE * min(width, height)


def _size(path):
    try:
        return read_bgr(path).size
    except ImageError:
        return None


def start_boxes(source, paths, boxes=None, detector=None, progress=None):
    """One start per image (a CropBox, or None for the whole image) for a resolved `source`.
    boxes: the dataset's (N, 4) face boxes, for 'dataset'; detector: an MTCNN, for 'mtcnn'
    (each image is decoded for it; one that cannot be is left to the cascade to refuse)."""
    if source == "none":
        return [None] * len(paths)
    starts = []
    for index, path in enumerate(paths):
        start = None
        if source == "dataset":
            size = _size(path)
            if size is not None:
                start = start_box(boxes[index], *size)
        else:
            try:
                decoded = read_bgr(path)
            except ImageError:
                decoded = None
            if decoded is not None:
                size = decoded.size
                faces = detector.detect(decoded.image)
                if faces:
                    start = start_box(main_face(faces).box, *size)
        starts.append(start if start is not None and not start.fallback and not fills(start, *size) else None)
        if progress:
            progress()
    return starts


def face_starts(faces, width, height):
    """The start of each detected face of one image (landmarks.runtime.mtcnn.Face): its region, or
    None (the whole image) where that region already fills the image."""
    return [None if fills(start, width, height) else start for start in
            (start_box(face.box, width, height) for face in faces)]
