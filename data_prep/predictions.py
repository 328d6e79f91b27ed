"""Owns the predictions file: one level's predicted points for a list of images.

Format (text, UTF-8): optional '#' comment lines at the top (free text, e.g. the model and
the run), then one line per image in list order:
    name x1 y1 x2 y2 x3 y3 x4 y4 x5 y5
(name: the image's path relative to the dataset's image folder, '/'-separated; no white space)
points in ORIGINAL-image pixels, as floats, in the SPEC's point order. `nan` is allowed (a
network that diverged); the crop rule falls back to the whole image for it. The level-1
predict step writes it with `write_predictions`; `data_prep.level2` reads it.
"""
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from data_prep.dataset import unsafe_path
from landmarks.conventions.labels import NUM_POINTS


class PredictionsError(ValueError):
    """A malformed predictions file; the message names the file and line."""


@dataclass
class Predictions:
    names: list
    points: np.ndarray  # (N, 5, 2) original-image pixels
    comments: list

    def as_dict(self):
        return dict(zip(self.names, self.points))

    def __len__(self):
        return len(self.names)


def write_predictions(path, names, points, comments=()):
    """Write atomically (a temporary file in the same folder, renamed at the end)."""
    points = np.asarray(points, dtype=np.float64).reshape(len(names), NUM_POINTS, 2)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".predictions-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for comment in comments:
                for line in str(comment).splitlines() or [""]:
                    fh.write(f"# {line}\n")
            for name, row in zip(names, points.reshape(len(names), -1)):
                if not name or any(c.isspace() for c in name):
                    raise PredictionsError(f"{path}: image name {name!r} is empty or has white space")
                fh.write(name + " " + " ".join(f"{v:.4f}" for v in row) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the other outputs are 0644
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_predictions(path):
    """Read a predictions file; `PredictionsError` naming file and line on any bad line."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise PredictionsError(f"{path}: cannot read ({exc.strerror})") from None
    names, rows, comments, seen = [], [], [], {}
    expected = 1 + 2 * NUM_POINTS
    for number, text in enumerate(lines, start=1):
        stripped = text.strip()
        if stripped.startswith("#"):
            if names:
                raise PredictionsError(f"{path}:{number}: comment lines are allowed only at the top")
            comments.append(stripped[1:].strip())
            continue
        if not stripped:
            continue
        fields = stripped.split()
        if len(fields) != expected:
            raise PredictionsError(f"{path}:{number}: {len(fields)} fields, expected {expected} (name and 10 coordinates)")
        name = fields[0]
        why = unsafe_path(name)
        if why:
            raise PredictionsError(f"{path}:{number}: image name {name!r} refused: {why}")
        if name in seen:
            raise PredictionsError(f"{path}:{number}: {name} repeated (first on line {seen[name]})")
        try:
            rows.append([float(v) for v in fields[1:]])
        except ValueError:
            bad = next(v for v in fields[1:] if not _is_float(v))
            raise PredictionsError(f"{path}:{number}: non-numeric value {bad!r}") from None
        seen[name] = number
        names.append(name)
    points = np.array(rows, dtype=np.float64).reshape(len(names), NUM_POINTS, 2)
    return Predictions(names, points, comments)


def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return False
