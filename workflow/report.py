"""Owns runs/<name>/report.md: one page with the settings, training, metrics (level 1 next to
the cascade), loss curves, error plots, timing, model sizes and the network diagram.

It only reads what the stages wrote into the run folder (settings.json, level*/train.json,
metrics.json, timing.json, plots), so it can be rebuilt at any time and shows what exists.
"""
import json
import os
import time
from pathlib import Path

SPLITS = ("train", "val", "test")


def _load(path):
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def _pct(value):
    return "–" if value is None or value != value else f"{100 * value:.2f}%"


def _image(run_dir, path, alt):
    path = Path(path)
    return f"![{alt}]({os.path.relpath(path, run_dir)})\n" if path.exists() else ""


def network_diagram(deploy_prototxt, png_path):
    """Caffe's own caffe.draw rendering of a deploy net (needs graphviz's `dot`)."""
    import caffe.draw
    from caffe.proto import caffe_pb2

    from landmarks.common.protoio import read_prototxt

    net = read_prototxt(deploy_prototxt, caffe_pb2.NetParameter())
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = png_path.with_name(f".{png_path.stem}.tmp.png")
    caffe.draw.draw_net_to_file(net, str(tmp), "TB")
    tmp.replace(png_path)
    return png_path


def _metrics_table(metrics):
    rows = ["| split | model | images | diagonal: mean | median | >5% | >10% | CED AUC@10% "
            "| inter-ocular: mean (excluded) | >10% | box width: mean | >10% |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for split in SPLITS:
        for level, label in (("level1", "level 1"), ("level2", "cascade (level 2)")):
            m = (metrics.get(split) or {}).get(level)
            if not m:
                continue
            iod = m.get("interocular") or {}
            box = m.get("box") or {}
            rows.append(f"| {split} | {label} | {m['images']} | {_pct(m['mean_error'])} | {_pct(m.get('median_error'))} "
                        f"| {_pct(m['failure_rate'].get('0.05'))} | {_pct(m['failure_rate'].get('0.10'))} "
                        f"| {m.get('ced_auc_0.10', float('nan')):.3f} | {_pct(iod.get('mean_error'))} "
                        f"({iod.get('excluded_zero_distance', 0)}) | {_pct(iod.get('failure_rate_0.10'))} "
                        f"| {_pct(box.get('mean_error'))} | {_pct(box.get('failure_rate_0.10'))} |")
    return "\n".join(rows) + "\n"


def _timing_table(timing):
    from landmarks.evaluate.timing import format_table  # the one table forward_timing prints and the README shows

    return format_table(timing) + "\n"


def _export_table(exported):
    """Each exported format: bytes per level and the largest difference from the original
    Caffe cascade on the validation images; the int8 error change."""
    rows = ["| format | bytes (" + " + ".join(exported["levels"]) + ") | max difference, cascade (normalised) |",
            "|---|---|---|"]
    agreement = exported.get("cascade", {}).get("agreement", {})
    for fmt, diff in agreement.items():
        key = "caffe" if fmt == "opencv" else fmt
        sizes = " + ".join(f"{net['sizes'].get(key, 0):,}" for net in exported["levels"].values())
        rows.append(f"| {fmt} | {sizes} | {diff['cascade']:.2g} |")
    errors = exported.get("cascade", {}).get("errors", {}).get("onnxruntime-int8")
    if errors:
        base = exported["cascade"]["original"]["cascade"]
        change = ", ".join(f"{name} {_pct(base[name])} -> {_pct(errors['cascade'][name])}" for name in base)
        rows.append(f"\nint8 cascade mean error on {exported['validation_images']} validation images: {change}")
    return "\n".join(rows) + "\n"


def write_report(run_dir):
    """(Re)writes run_dir/report.md from what the run folder holds; returns its path."""
    run_dir = Path(run_dir)
    settings = _load(run_dir / "settings.json") or {}
    metrics = _load(run_dir / "metrics.json") or {}
    timing = _load(run_dir / "timing.json")
    out = [f"# Run `{run_dir.name}`\n\n", f"Report written {time.strftime('%Y-%m-%d %H:%M')}.\n"]
    if settings:
        out.append("\n## Settings\n\n| setting | value |\n|---|---|\n")
        out.extend(f"| {k} | `{v}` |\n" for k, v in settings.items())
    out.append("\n## Training\n")
    from workflow.provenance import stale_level2

    for level in (1, 2):
        train = _load(run_dir / f"level{level}" / "train.json")
        if not train:
            continue
        stale = stale_level2(run_dir) if level == 2 else ""
        if stale:  # never shown beside a level 1 it was not made from
            out.append(f"\n### Level 2\n\n- not part of this run's results: {stale}; run `make crops` and "
                       f"`make level2` again\n")
            continue
        out.append(f"\n### Level {level}\n\n- status: {train['status']}, {train.get('last_iteration')} iterations "
                   f"in {train.get('seconds', 0) / 60:.1f} min on {train['mode']}\n"
                   f"- final weights: `{train.get('final_weights')}`\n- log: `{train['log']}`\n\n")
        out.append(_image(run_dir, run_dir / f"level{level}" / "plots" / "loss_curves.png", f"level {level} loss"))
    if metrics:
        cascade = any("level2" in levels for levels in metrics.values())
        out.append("\n## Accuracy\n\nErrors are mean point distances in original-image pixels over three "
                   "normalisers, side by side: the image's diagonal (the article's, SPEC.md), the true "
                   "inter-ocular distance (MTFL/AFLW; images with both eyes on one pixel excluded), and the "
                   "face box's width (Sun et al.; only where the dataset gives boxes). Failure rates count "
                   "images above the threshold." + (" The cascade is scored on the same images as level 1, "
                                                     "none dropped." if cascade else "") + "\n\n")
        out.append(_metrics_table(metrics))
    plots = run_dir / "plots"
    for name, caption in (("per_point.png", "Per-point mean error"), ("histograms.png", "Error histograms"),
                          ("ced.png", "Cumulative error distribution"), ("worst.png", "Worst test images")):
        image = _image(run_dir, plots / name, caption)
        if image:
            out.append(f"\n### {caption}\n\n{image}")
    if timing:
        out.append("\n## Speed\n\n" + _timing_table(timing))
        sizes = timing.get("model_sizes", {})
        if sizes:
            out.append("\n| model | file | bytes | stored values |\n|---|---|---|---|\n")
            out.extend(f"| {name} | `{s['path']}` | {s['bytes']:,} | {s.get('values', '–'):,} |\n"
                       for name, s in sizes.items())
    exported = _load(run_dir / "export" / "export.json")
    if exported:
        out.append("\n## Deployment (`export/`, see its README.md)\n\n" + _export_table(exported))
    diagram = run_dir / "plots" / "network.png"
    if diagram.exists():
        out.append("\n## Network (level 1 and 2 share it)\n\n" + _image(run_dir, diagram, "network"))
    path = run_dir / "report.md"
    tmp = run_dir / ".report.md.tmp"
    tmp.write_text("".join(out))
    tmp.replace(path)
    return path
