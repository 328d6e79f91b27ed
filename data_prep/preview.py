"""Owns the contact sheet: the first samples as the network sees them, with their labels
drawn back on, to check a build by eye (a wrong label convention shows at once)."""
import cv2
import numpy as np

from landmarks.conventions.images import frame_to_output
from landmarks.conventions.labels import as_points, denormalise

# One colour per point (BGR), in SPEC order: left eye, right eye, nose, mouth left, mouth right.
POINT_COLOURS = ((0, 255, 0), (0, 255, 255), (255, 0, 255), (255, 128, 0), (0, 128, 255))
ZOOM = 3  # a 48 px patch is too small to judge by eye


def patch_points(label, frame_w, frame_h, size):
    """A label row (10,) of a sample cut from a frame_w x frame_h box -> its points in the
    size x size patch's pixels."""
    return frame_to_output(denormalise(as_points(label), frame_w, frame_h), frame_w, frame_h, size)


def contact_sheet(patches, labels, frames, columns=8):
    """A BGR image of the patches (uint8 S x S x 3) in a grid, points drawn."""
    if not patches:
        return np.zeros((8, 8, 3), dtype=np.uint8)
    size = patches[0].shape[0]
    cell = size * ZOOM
    rows = -(-len(patches) // columns)
    sheet = np.full((rows * (cell + 2), columns * (cell + 2), 3), 40, dtype=np.uint8)
    for i, (patch, label, (fw, fh)) in enumerate(zip(patches, labels, frames)):
        big = cv2.resize(patch, (cell, cell), interpolation=cv2.INTER_NEAREST)
        for (x, y), colour in zip(patch_points(label, fw, fh, size), POINT_COLOURS):
            centre = (int(round((x + 0.5) * ZOOM - 0.5)), int(round((y + 0.5) * ZOOM - 0.5)))
            cv2.circle(big, centre, 3, colour, -1, lineType=cv2.LINE_AA)
        r, c = divmod(i, columns)
        sheet[r * (cell + 2) + 1:r * (cell + 2) + 1 + cell, c * (cell + 2) + 1:c * (cell + 2) + 1 + cell] = big
    return sheet
