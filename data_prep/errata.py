"""Owns the known label errors of published data sets, how each is recognised, and the fix.

A fix is applied by `apply` when a data set is loaded (`data_prep.readers.load`), image by
image, only where the error is really there (its test), and is reported as a warning that
names the erratum, the count and how to turn it off (`--no-errata`). Nothing here guesses:
each erratum records how it was found and measured.

MTFL-80 (the 80 x 80 copy of MTFL's training set): in 2,350 of the 5,849 `net_7876/` photos,
exactly those whose file name starts with `_` (`net_7876/_<yaw>_<id>_<k>.jpg`), every y is a
third of the image height too small: the eyes are labelled at y = 3.5 px (median) on faces
whose eyes are at 30 px, like the other net_7876 photos (29.9 px). Seen in the pictures, and
measured with a level-1 net trained on the other 7,650 faces only: its predictions lie below
these labels by 26.3, 26.4, 28.0, 28.6, 28.7 px (median, left eye to right mouth corner; 95%
of the images within 4 px of 26.7 = 80 / 3), and 0.0-2.1 px sideways. Left as they are, these
faces teach level 1 that eyes sit at the top edge: trained on all 10,000 as given, the val
error of level 1 was 3.08% on the other faces against 1.69% without them.
The test: the image is in that group and both eyes are labelled in the top sixth of it
(the wrong ones reach 7.2 px at the 99th percentile, the right ones start at 18 px).
"""
import fnmatch
from dataclasses import dataclass, replace

import numpy as np

from landmarks.conventions.labels import LEFT_EYE, RIGHT_EYE


@dataclass(frozen=True)
class Erratum:
    name: str
    formats: tuple  # the layouts it can occur in
    pattern: str  # fnmatch pattern on the entry name ('/'-separated path under the image folder)
    shift_y: float  # added to every y, as a fraction of the image height
    eyes_above: float  # applies only where both eyes are labelled above this fraction of the height


ERRATA = (
    Erratum("MTFL-80 net_7876/_* labels a third of the height too high", ("mtfl",), "net_7876/_*",
            shift_y=1.0 / 3.0, eyes_above=1.0 / 6.0),
)


def apply(dataset, image_size, errata=ERRATA):
    """The data set with every erratum fixed where its test holds; `image_size(entry)` gives
    (width, height). Adds one warning per erratum applied; returns the number of entries fixed."""
    fixed_total = 0
    for erratum in errata:
        if dataset.format not in erratum.formats:
            continue
        fixed = 0
        entries = []
        for e in dataset.entries:
            if fnmatch.fnmatchcase(e.name, erratum.pattern):
                _, height = image_size(e)
                eyes = np.asarray(e.points)[[LEFT_EYE, RIGHT_EYE], 1]
                if height and np.all(eyes < erratum.eyes_above * height):
                    points = np.array(e.points, dtype=np.float64)
                    points[:, 1] += erratum.shift_y * height
                    e = replace(e, points=points)
                    fixed += 1
            entries.append(e)
        if fixed:
            dataset.entries = entries
            dataset.warnings.append(f"errata: {erratum.name}: {fixed} labels corrected "
                                    f"(data_prep/errata.py; --no-errata keeps them as given)")
            fixed_total += fixed
    return fixed_total
