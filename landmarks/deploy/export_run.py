"""Owns exporting a whole run (runs/<RUN>/export/): both levels through landmarks.deploy.export, then
the whole cascade in every backend against the original Caffe cascade on validation images
(points in normalised units), the int8 cascade's error change in every normalisation that
landmarks.conventions.metrics reports, and the folder's README on how to load each file.

Level 1 is checked and calibrated on whole images, level 2 on the crops that the ORIGINAL
level 1 gives (as the cascade would feed it).
"""
from pathlib import Path

import numpy as np

from landmarks.common.atomic import write_json, write_text
from landmarks.common.progress import bar as progress_bar  # plain lines when not on a terminal
from landmarks.conventions import metrics
from landmarks.conventions.crop import crop_box
from landmarks.conventions.images import read_level1, read_level2
from landmarks.conventions.labels import normalise
from landmarks.deploy import export
from landmarks.runtime import backends
from landmarks.runtime.inference import Cascade

CASCADE_BATCH = 64
FORMATS = ("caffe", "caffe-depthwise", "opencv", "onnxruntime", "onnxruntime-int8", "ncnn")


def _inputs(model, paths, level1_model=None):
    """Preprocessed inputs of `paths` for this level (level 2: crops from level1_model's points)."""
    if level1_model is None:
        size = backends.caffe_input_size(model[0])
        return np.stack([read_level1(p, size)[0] for p in paths])
    first = backends.load("caffe", level1_model)
    size = backends.caffe_input_size(model[0])
    out = []
    for start in range(0, len(paths), CASCADE_BATCH):
        chunk = paths[start:start + CASCADE_BATCH]
        points, sizes = Cascade(first).level1_batch(chunk)
        out += [read_level2(p, crop_box(pt, *s), size)[0] for p, pt, s in zip(chunk, points, sizes)]
    return np.stack(out)


def format_nets(record, fmt):
    """(runtime, files) of one format of an exported net, or None when it was not written."""
    key = "caffe" if fmt == "opencv" else fmt
    if key not in record["files"]:
        return None
    return fmt.replace("-int8", "").replace("-depthwise", ""), record["files"][key]


def run_cascade(cascade, paths, progress=None):
    """(level-1 points, final points, sizes) over image files, in batches."""
    first, final, sizes = [], [], []
    for start in range(0, len(paths), CASCADE_BATCH):
        chunk = paths[start:start + CASCADE_BATCH]
        p1, s = cascade.level1_batch(chunk)
        p2 = cascade.level2_batch(chunk, p1, s)[0] if cascade.level2 is not None else p1
        first.append(p1)
        final.append(p2)
        sizes.extend(s)
        if progress:
            progress(len(chunk))
    return np.concatenate(first), np.concatenate(final), np.array(sizes, dtype=np.float64)


def errors(points, truth, sizes):
    """{normalisation: mean error} for every normalisation landmarks.conventions.metrics.summarise reports
    (the diagonal one as "diagonal", each nested one with a mean_error under its own name)."""
    summary = metrics.summarise(points, truth, sizes[:, 0], sizes[:, 1])
    out = {"diagonal": summary["mean_error"]}
    out.update({k: v["mean_error"] for k, v in summary.items() if isinstance(v, dict) and "mean_error" in v})
    return out


def export_run(models, validation, calibration, out_dir, run="", echo=print):
    """Exports both levels of a run into out_dir and checks the cascades. models: {"level1":
    (deploy, weights), "level2": (deploy, weights) or None} (workflow.runs.run_models gives a
    run folder's); validation / calibration: [(image path, (5, 2) true points)]; run: the run
    folder's name, for the record. Returns the record written to export.json."""
    out_dir = Path(out_dir)
    val_paths = [p for p, _ in validation]
    cal_paths = [p for p, _ in calibration]
    record = {"run": str(run), "validation_images": len(val_paths), "calibration_images": len(cal_paths),
              "levels": {}}
    for level, model in models.items():
        if model is None:
            continue
        parent = models["level1"] if level == "level2" else None
        echo(f"{level}: preprocessing {len(val_paths)} check and {len(cal_paths)} calibration images")
        net = export.export_net(*model, out_dir / level, _inputs(model, val_paths, parent),
                                _inputs(model, cal_paths, parent), echo=echo)
        record["levels"][level] = net
        echo(export.format_record(level, net))
    record["cascade"] = check_cascades(models, record["levels"], validation, echo)
    write_json(out_dir / "export.json", record)
    write_text(out_dir / "README.md", readme(record))
    return record


def check_cascades(models, levels, validation, echo=print):
    """Every format's cascade against the original Caffe cascade, and the errors of both."""
    paths = [p for p, _ in validation]
    truth = np.stack([t for _, t in validation])
    has_two = models["level2"] is not None
    original = Cascade(*(backends.load("caffe", m) for m in (models["level1"], models["level2"]) if m))
    formats = [f for f in FORMATS if all(format_nets(levels[l], f) for l in levels)]
    bar = progress_bar(total=len(paths) * (1 + len(formats)), desc="cascades", unit="img")
    ref1, ref2, sizes = run_cascade(original, paths, bar.update)
    out = {"original": {"level1": errors(ref1, truth, sizes), "cascade": errors(ref2, truth, sizes)},
           "agreement": {}, "errors": {}}
    for fmt in formats:
        nets = []
        for level in ("level1", "level2") if has_two else ("level1",):
            runtime, files = format_nets(levels[level], fmt)
            if backends.unavailable(runtime):
                break
            nets.append(backends.load(runtime, files, size=levels[level]["input_size"]))
        else:
            p1, p2, _ = run_cascade(Cascade(*nets), paths, bar.update)
            w, h = sizes[:, 0], sizes[:, 1]
            out["agreement"][fmt] = {
                "level1": float(np.abs(normalise(p1, w, h) - normalise(ref1, w, h)).max()),
                "cascade": float(np.abs(normalise(p2, w, h) - normalise(ref2, w, h)).max())}
            out["errors"][fmt] = {"level1": errors(p1, truth, sizes), "cascade": errors(p2, truth, sizes)}
    bar.close()
    echo(format_cascades(out))
    return out


def format_cascades(cascade):
    lines = ["cascade on the validation images, max |points - original Caffe cascade's| (normalised units):"]
    for fmt, diff in cascade["agreement"].items():
        lines.append(f"  {fmt:<18} level 1 {diff['level1']:.3g}   cascade {diff['cascade']:.3g}")
    names = list(cascade["original"]["cascade"])
    lines.append("mean error, " + " | ".join(names) + ":")
    rows = [("original Caffe", cascade["original"])] + list(cascade["errors"].items())
    for name, figures in rows:
        for stage in ("level1", "cascade"):
            values = "  ".join(f"{100 * figures[stage][n]:7.3f}%" for n in names)
            lines.append(f"  {name:<18} {stage:<8} {values}")
    if "onnxruntime-int8" in cascade["errors"]:
        base, q = cascade["original"]["cascade"], cascade["errors"]["onnxruntime-int8"]["cascade"]
        change = ", ".join(f"{n} {100 * (q[n] - base[n]):+.3f} points" for n in names)
        lines.append(f"int8 cascade error change: {change}")
    return "\n".join(lines)


def readme(record):
    """The export folder's README: what each file is and how to load it."""
    sizes = "\n".join(f"| {level} | {key} | {', '.join(Path(f).name for f in net['files'][key])} | {net['sizes'][key]:,} |"
                      for level, net in record["levels"].items() for key in net["files"])
    skipped = "".join(f"\n- {level} {key}: not written ({why})" for level, net in record["levels"].items()
                      for key, why in net["skipped"].items())
    return f"""# Exported models of {record['run']}

Each level's folder (`level1/`, `level2/`) holds the same net in every format. Inputs: BGR as
OpenCV reads it, resized to {record['levels']['level1']['input_size']}x{record['levels']['level1']['input_size']} (level 1: the whole image; level 2: the crop of
`landmarks/conventions/crop.py` around level 1's points), minus 127.5, NCHW float32. Output `fc2`: 10
values `x1 y1 ... x5 y5` normalised to [-1, 1] over the image (or crop) the net saw
(`landmarks/conventions/labels.py`). In this project, `landmarks.runtime.backends.load(name, files)` opens any of
them and `landmarks.runtime.inference.Cascade` runs the whole cascade on it.

| level | format | files | bytes |
|---|---|---|---|
{sizes}
{skipped}

- **Caffe** (`deploy.prototxt`, `weights.caffemodel`): BatchNorm and Scale folded into the
  convolutions, Dropout removed, depthwise layers as stock `Convolution` with `group`: stock
  Caffe loads it: `caffe.Net("deploy.prototxt", caffe.TEST, weights="weights.caffemodel")`.
- **Our Caffe**: `deploy_depthwise.prototxt` with the same `weights.caffemodel` keeps our
  `ConvolutionDepthwise` layer (faster here than the stock grouped convolution).
- **OpenCV 4.x dnn**: `cv2.dnn.readNetFromCaffe("deploy.prototxt", "weights.caffemodel")`,
  `net.setInput(blob)`, `net.forward("fc2")`. OpenCV 5 has no Caffe reader: use
  `cv2.dnn.readNetFromONNX("model.onnx")`.
- **ONNX Runtime**: `onnxruntime.InferenceSession("model.onnx").run(["fc2"], {{"data": blob}})`;
  the batch size is free.
- **int8** (`model.int8.onnx`): the same call. Static QDQ quantisation (per-channel int8
  weights, uint8 activations), calibrated on {record['calibration_images']} real images; its
  difference from the float model and its error change are in `export.json` (`cascade`).
- **ncnn** (`model.ncnn.param`, `model.ncnn.bin`, fp32, made by pnnx from `model.onnx`):
  `net = ncnn.Net(); net.load_param(...); net.load_model(...)`, then per image
  `ex = net.create_extractor(); ex.input("in0", ncnn.Mat(chw)); ex.extract("out0")`. Keep
  `net.opt.use_fp16_storage = False` (and packed/arithmetic) for fp32 results.

`export.json` records each file's size, what was folded, and each format's largest
difference from the original Caffe net on {record['validation_images']} real validation images, per level and for
the whole cascade.
"""
