"""Owns running trained deploy nets: one level on preprocessed inputs, and the two-level
cascade on original images (level 1 on the whole image, the crop rule, level 2 on the crop,
points mapped back to original-image pixels), run by a `Recipe`:

- `article` (the default; SPEC.md): level 1 once, the article's crop, level 2 once.
- `real` (what `SCHEDULE=real` trains for and the shipped models use): each net also sees
  its input mirrored and the two answers are averaged (`mirror`); level 1 looks a second time
  at an upright square around the face its first look found (`refine`, landmarks.conventions.crop's
  `face_box`: a rolled, small or off-centre face becomes an upright, centred one); level 2
  gets the `upright` crop (eyes level, never clipped). Three times the forward passes of
  `article`; measured in README's "Results on real faces".

Preprocessing is landmarks.conventions.images' (the same code that wrote the training data), the crop
rule is landmarks.conventions.crop's, the label convention landmarks.conventions.labels': none is restated here.
"""
from dataclasses import asdict, dataclass

import numpy as np

from landmarks.conventions.crop import CROP_RULES, face_box, level2_box
from landmarks.conventions.images import read_level1, read_level2
from landmarks.conventions.labels import denormalise, flip_normalised


@dataclass(frozen=True)
class Recipe:
    """How the cascade runs its two nets (see the module doc)."""
    name: str = "article"
    mirror: bool = False  # average each net's answer with its answer on the mirrored input
    refine: bool = False  # level 1 again on an upright box around the face it found
    crop: str = "article"  # level 2's crop rule (landmarks.conventions.crop.CROP_RULES)

    def __post_init__(self):
        if self.crop not in CROP_RULES:
            raise ValueError(f"unknown crop rule {self.crop!r}; choose from {', '.join(CROP_RULES)}")

    def as_dict(self):
        return asdict(self)

    def describe(self):
        """One line for the screen: the name and what it does."""
        parts = ["mirrored answers averaged"] if self.mirror else []
        parts += ["level 1's second look at the upright face"] if self.refine else []
        parts.append(f"level 2 on the {self.crop} crop")
        return f"{self.name} ({', '.join(parts)})"


RECIPES = {"article": Recipe(), "real": Recipe("real", mirror=True, refine=True, crop="upright")}
ARTICLE = RECIPES["article"]


def recipe_named(name):
    """The Recipe called `name`; ValueError naming the choices otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown cascade recipe {name!r}; choose from {', '.join(RECIPES)}")
    return RECIPES[name]


@dataclass
class CascadeResult:
    level1: np.ndarray  # (k, 2) original-image pixels
    level2: np.ndarray  # (k, 2) original-image pixels (None without a level-2 net)
    box: object  # the CropBox level 2 saw
    size: tuple  # (width, height) of the original image


class Cascade:
    """Level 1 and (optionally) level 2 on original image files, run by `recipe`."""

    def __init__(self, level1, level2=None, recipe=ARTICLE):
        self.level1, self.level2, self.recipe = level1, level2, recipe

    def _forward(self, net, inputs):
        """(N, k, 2) normalised points of `net` on (3, S, S) inputs, mirrored too if the recipe says."""
        batch = np.stack(inputs)
        points = net.forward(batch)
        if self.recipe.mirror:
            points = 0.5 * (points + flip_normalised(net.forward(np.ascontiguousarray(batch[..., ::-1]))))
        return points

    def level1_batch(self, paths, starts=None):
        """Level 1 on image files (or landmarks.conventions.images.in_memory images): ((N, k, 2)
        original pixels, [(w, h)] sizes). starts: None, or one entry per image: None for level 1's
        first look at the whole image (the article's), or a region around a face that a detector
        or a dataset gave (landmarks.conventions.crop.start_box), which level 1 sees as a whole image."""
        if not paths:
            return np.zeros((0, 5, 2)), []
        starts = list(starts) if starts is not None else [None] * len(paths)
        read = [read_level1(path, self.level1.size) if box is None else read_level2(path, box, self.level1.size)
                for path, box in zip(paths, starts)]
        inputs, sizes = zip(*read)
        normalised = self._forward(self.level1, inputs)
        points = np.stack([denormalise(p, *size) if box is None else box.unlabel(p)
                           for p, size, box in zip(normalised, sizes, starts)])
        if self.recipe.refine:
            boxes = [face_box(p, *size) for p, size in zip(points, sizes)]
            normalised = self._forward(self.level1, [read_level2(path, box, self.level1.size)[0]
                                                     for path, box in zip(paths, boxes)])
            points = np.stack([box.unlabel(p) for p, box in zip(normalised, boxes)])
        return points, list(sizes)

    def level2_batch(self, paths, level1_points, sizes):
        """Level 2 on the crops that level 1's points give: ((N, k, 2) original pixels, boxes)."""
        if not paths:
            return np.zeros((0, 5, 2)), []
        boxes = [level2_box(self.recipe.crop, points, *size) for points, size in zip(level1_points, sizes)]
        normalised = self._forward(self.level2, [read_level2(path, box, self.level2.size)[0]
                                                 for path, box in zip(paths, boxes)])
        return np.stack([box.unlabel(p) for p, box in zip(normalised, boxes)]), boxes

    def run(self, path, start=None):
        """The whole cascade on one image file (or in_memory image); start: a region around the face
        (landmarks.conventions.crop.start_box), or None for the whole image."""
        (first,), (size,) = self.level1_batch([path], None if start is None else [start])
        if self.level2 is None:
            return CascadeResult(first, None, None, size)
        (second,), (box,) = self.level2_batch([path], [first], [size])
        return CascadeResult(first, second, box, size)
