"""Owns the figures of a run: per-point error bars, error histograms, CED curves and the
gallery of worst images. Each function writes one PNG and returns its path."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import cv2
import matplotlib.pyplot as plt
import numpy as np

from landmarks.conventions.labels import POINT_NAMES
from landmarks.conventions.metrics import CED_LIMIT, ced


def save_figure(fig, path, dpi=110, tight=True):
    """Writes `fig` as a PNG under a temporary name, then renames it: a full disk leaves no
    cut image under the final name, and no temporary file either (it is removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return path


def per_point_bars(series, path, title="Mean error per point"):
    """series: {label: per-point mean errors (fractions)}; grouped bars in percent."""
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(POINT_NAMES))
    top = max([float(np.nanmax(np.asarray(v) * 100)) for v in series.values() if len(v)] + [1.0])
    ax.set_ylim(0, top * 1.3)  # headroom so the legend never covers a bar's label
    for i, (label, values) in enumerate(series.items()):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, np.asarray(values) * 100, width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, [name.replace("_", " ") for name in POINT_NAMES])
    ax.set_ylabel("mean error (% of image diagonal)")
    ax.set_title(title)
    ax.legend(loc="upper right", ncol=len(series))
    return save_figure(fig, path)


def error_histograms(series, path, title="Per-image error distribution"):
    """series: {label: per-image errors}; overlaid histograms in percent on one figure."""
    fig, ax = plt.subplots(figsize=(7, 4))
    finite = [np.asarray(v)[np.isfinite(v)] * 100 for v in series.values()]
    top = max([np.percentile(v, 99.5) for v in finite if len(v)] + [1.0])
    bins = np.linspace(0, top, 60)
    for (label, _), values in zip(series.items(), finite):
        ax.hist(values, bins=bins, density=True, histtype="stepfilled", alpha=0.45,
                label=f"{label} (n={len(values)}, mean {values.mean():.2f}%)" if len(values) else label)
    ax.set_xlabel("mean point error (% of image diagonal)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, path)


def ced_curves(series, path, title="Cumulative error distribution"):
    """series: {label: per-image errors}; CED up to CED_LIMIT with the AUC in the legend."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, errors in series.items():
        thresholds, fractions, auc = ced(errors)
        ax.plot(thresholds * 100, fractions, label=f"{label} (AUC@{CED_LIMIT:.0%} = {auc:.3f})")
    ax.set_xlim(0, CED_LIMIT * 100)
    ax.set_ylim(0, 1.0)
    ax.set_xlabel("mean point error (% of image diagonal)")
    ax.set_ylabel("fraction of images")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right")
    return save_figure(fig, path)


def gallery(tiles, path, columns=4, tile_size=256, title=None):
    """tiles: list of (BGR image, caption); laid out in a grid, each fitted in a square."""
    rows = max(1, int(np.ceil(len(tiles) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 2.6, rows * 2.8), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (image, caption) in zip(axes.ravel(), tiles):
        scale = tile_size / max(image.shape[:2])
        shown = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
        ax.imshow(cv2.cvtColor(shown, cv2.COLOR_BGR2RGB))
        ax.set_title(caption, fontsize=7)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
