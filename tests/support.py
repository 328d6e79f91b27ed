"""Helpers several test modules share (pytest puts tests/ on the import path): real Caffe nets
built to output fixed points, run folders holding given models as finished stages leave them,
and the coloured discs that stand for the five points in drawn test images."""
import json
import os
import shutil
from pathlib import Path

import caffe
import numpy as np
import pytest
from scipy import ndimage

from landmarks.conventions.labels import as_rows

ROOT = Path(__file__).resolve().parent.parent
# Real faces for the tests that need them: a copy of MTFL named by `make test MTFL=DIR` (the
# LANDMARKS_MTFL_DIR environment variable). Nothing outside the repository is assumed: without
# one, those tests skip and say why.
MTFL_ENV = "LANDMARKS_MTFL_DIR"
MTFL = Path(os.environ.get(MTFL_ENV) or "/nonexistent-mtfl-copy")
needs_mtfl = pytest.mark.skipif(not (MTFL / "training.txt").is_file(),
                                reason=f"no MTFL copy given (make test MTFL=DIR, or {MTFL_ENV}=DIR)" if not os.environ.get(MTFL_ENV)
                                else f"{MTFL}: no training.txt there, so not an MTFL copy")
DEPLOY = {1: ROOT / "prototxt" / "level1_deploy.prototxt", 2: ROOT / "prototxt" / "level2_deploy.prototxt"}
# normalised outputs: level 1 in the whole image, level 2 in the crop (both face-like)
LEVEL1_OUT = np.array([[-0.3, -0.3], [0.3, -0.3], [0.0, 0.05], [-0.25, 0.4], [0.25, 0.4]])
LEVEL2_OUT = np.array([[-0.35, -0.5], [0.35, -0.5], [0.0, -0.2], [-0.3, 0.3], [0.3, 0.3]])
# one colour per point (BGR), all distinct: left eye, right eye, nose, mouth left, mouth right
POINT_COLOURS = np.array([(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255)], dtype=float)


def fixed_output_net(level, points, path):
    """A level's deploy net whose output is `points` whatever the input (fc2 weights zero, its
    bias the points), saved as a caffemodel at `path`; returns the path."""
    net = caffe.Net(str(DEPLOY[level]), caffe.TEST)
    for name, blobs in net.params.items():
        if net.layers[list(net._layer_names).index(name)].type == "BatchNorm":
            blobs[0].data[...], blobs[1].data[...], blobs[2].data[...] = 0, 1, 1
        else:
            for blob in blobs:
                blob.data[...] = 0.01
    net.params["fc2"][0].data[...] = 0
    net.params["fc2"][1].data[...] = as_rows(points)
    net.save(str(path))
    return str(path)


def fixed_output_models(folder):
    """[(deploy, weights)] of level 1 (outputs LEVEL1_OUT) and level 2 (LEVEL2_OUT)."""
    return [(str(DEPLOY[level]), fixed_output_net(level, out, Path(folder) / f"level{level}.caffemodel"))
            for level, out in ((1, LEVEL1_OUT), (2, LEVEL2_OUT))]


def finished_run_folder(run, models):
    """A run folder `run` holding [(deploy, weights)] of level 1 (and level 2) as finished stages
    leave them (workflow.runs takes them): each level's deploy.prototxt, train.json "done",
    stage.json with the fingerprints workflow.provenance checks; level 2 made from this level 1
    and its (empty) crops manifest. Returns `run`."""
    from workflow.provenance import fingerprint

    run = Path(run)
    for level, (deploy, weights) in enumerate(models, start=1):
        folder = run / f"level{level}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(deploy, folder / "deploy.prototxt")
        (folder / "train.json").write_text(json.dumps({"status": "done", "final_weights": str(weights)}))
        stage = {"outputs": {"weights": fingerprint(weights), "deploy": fingerprint(folder / "deploy.prototxt")}}
        if level == 2:
            (folder / "data").mkdir(exist_ok=True)
            (folder / "data" / "manifest.json").write_text("{}")
            stage["made_from"] = {"inputs": {"level1_weights": fingerprint(models[0][1]),
                                             "crops": fingerprint(folder / "data" / "manifest.json")}}
        (folder / "stage.json").write_text(json.dumps(stage))
    return run


def colour_blobs(patch, threshold=40, min_pixels=1, weighted=True):
    """{point index: centroid (x, y)} of the discs drawn in POINT_COLOURS in a BGR patch: pixels
    brighter than `threshold`, blobs of at least `min_pixels`, each named by its mean colour;
    the centroid weighted by brightness or plain."""
    intensity = patch.astype(float).max(axis=2)
    labels, n = ndimage.label(intensity > threshold)
    found = {}
    for k in range(1, n + 1):
        mask = labels == k
        if mask.sum() < min_pixels:
            continue
        mean = patch[mask].astype(float).mean(axis=0)
        colour = int(np.argmin(np.linalg.norm(POINT_COLOURS / 255 - mean / mean.max(), axis=1)))
        ys, xs = np.nonzero(mask)
        w = intensity[mask] if weighted else np.ones(len(xs))
        found[colour] = np.array([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])
    return found
