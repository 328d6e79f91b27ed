"""Owns the user's job, stage by stage: level 1 (data, nets, `caffe train`, predictions on
every image, evaluation, plots), the level-2 crops, level 2 (the same, then the cascade
scored against level 1 on the same images), and the whole chain as a demo.

Every stage reads and writes one run folder, runs/<name>/, and writes its resolved settings
there first (workflow.settings); data prep is called through its own command line
(workflow.data), so that what runs here is exactly what a user would run by hand.
"""
import sys
import time
from pathlib import Path

import numpy as np

from landmarks.common.atomic import write_json
from landmarks.conventions import metrics
from landmarks.evaluate import plots
from landmarks.nets.generate import write_level_files
from landmarks.nets.mobilenet import NetConfig
from landmarks.nets.solvers import get_schedule
from workflow import provenance
from workflow.data import load_dataset, prepare_level1_data, python_module, test_iter
from workflow.report import network_diagram, write_report
from workflow.runs import UnfinishedRun, finished_level
from workflow.settings import (SPLITS, WorkflowError, augment_args, dataset_path, read_json, recipe, record_settings,
                               record_split, run_dir, scaled_schedule)

WORST_SHOWN = 16


def _train_level(settings, level, data_dir):
    from landmarks.train.driver import train

    out = run_dir(settings) / f"level{level}"
    schedule = scaled_schedule(get_schedule(settings.schedule), settings.iterations)
    cfg = NetConfig(input_size=settings.input_size, depthwise=settings.depthwise, loss=settings.loss)
    paths = write_level_files(out, level, cfg, settings.format, data_dir, schedule,
                              mode="GPU" if settings.gpu else "CPU",
                              test_iter=test_iter(data_dir, schedule.batch_test))
    record = train(paths["solver"], out, resume=settings.resume, gpu=settings.gpu or None)
    _loss_curves(out)
    return paths["deploy"], record["final_weights"]


def _loss_curves(level_dir):
    from landmarks.train import caffe_log, loss_curves

    log = caffe_log.parse_log(level_dir / "train.log")
    figure_dir = level_dir / "plots"
    figure_dir.mkdir(parents=True, exist_ok=True)
    fig = loss_curves.loss_figure([log], [level_dir.name])
    plots.save_figure(fig, figure_dir / "loss_curves.png")
    for phase in ("train", "test"):
        caffe_log.write_csv(log, phase, figure_dir / f"loss.{phase}.csv")


def _predict(paths, batch_fn, batch_size=64, desc="predict"):
    """Runs `batch_fn(list of paths) -> per-path results` in batches with a progress bar; a
    batch that hits an unreadable image is redone image by image so only that one is
    skipped. Returns (results by index, {index: reason})."""
    from landmarks.common.progress import bar as tqdm  # plain lines when stderr is not a terminal
    from landmarks.conventions.images import ImageError

    results, skipped = {}, {}
    with tqdm(total=len(paths), desc=desc, unit="img", file=sys.stderr) as bar:
        for start in range(0, len(paths), batch_size):
            chunk = list(range(start, min(start + batch_size, len(paths))))
            try:
                for i, result in zip(chunk, batch_fn([paths[i] for i in chunk])):
                    results[i] = result
            except ImageError:
                for i in chunk:
                    try:
                        results[i] = batch_fn([paths[i]])[0]
                    except ImageError as err:
                        skipped[i] = str(err)
            bar.update(len(chunk))
    return results, skipped


def _level1_predictions(dataset, deploy, weights, settings):
    """Level 1 on every image of the dataset: {name: (points (5,2) px, (w, h))}, skipped."""
    from landmarks.runtime.backends import CaffeNet
    from landmarks.runtime.inference import Cascade

    cascade = Cascade(CaffeNet(deploy, weights), recipe=recipe(settings))
    names = [entry.name for entry in dataset.entries]
    paths = [dataset.image_path(name) for name in names]

    def batch(chunk):
        points, sizes = cascade.level1_batch(chunk)
        return list(zip(points, sizes))

    results, skipped = _predict(paths, batch, desc="level 1")
    return {names[i]: r for i, r in results.items()}, {names[i]: why for i, why in skipped.items()}


def _cascade_predictions(dataset, level1, deploy1, weights1, deploy2, weights2, settings):
    """Level 2 on the crops given by level 1's predictions: {name: (points px, box)}."""
    from landmarks.runtime.backends import CaffeNet
    from landmarks.runtime.inference import Cascade

    cascade = Cascade(CaffeNet(deploy1, weights1), CaffeNet(deploy2, weights2), recipe(settings))
    names = [entry.name for entry in dataset.entries if entry.name in level1]
    paths = [dataset.image_path(name) for name in names]
    by_path = dict(zip(paths, names))

    def batch(chunk):
        firsts = [level1[by_path[p]][0] for p in chunk]
        sizes = [level1[by_path[p]][1] for p in chunk]
        points, boxes = cascade.level2_batch(chunk, firsts, sizes)
        return list(zip(points, boxes))

    results, skipped = _predict(paths, batch, desc="level 2")
    return {names[i]: r for i, r in results.items()}, {names[i]: why for i, why in skipped.items()}


def _save_predictions(path, names, points, skipped):
    from data_prep.predictions import write_predictions

    write_predictions(path, names, points)
    if skipped:
        write_json(Path(path).with_suffix(".skipped.json"), skipped)


def _split_arrays(dataset, predictions, split):
    """(names, predicted, truth, widths, heights, face boxes or None) of one split's
    predicted images; boxes when the dataset gives them (Sun et al.'s lists)."""
    entries = [e for e in dataset.split(split) if e.name in predictions]
    if not entries:
        return [], *(np.zeros((0, 5, 2)),) * 2, np.zeros(0), np.zeros(0), None
    predicted = np.stack([predictions[e.name][0] for e in entries])
    truth = np.stack([np.asarray(e.points, dtype=np.float64).reshape(5, 2) for e in entries])
    sizes = np.array([predictions[e.name][1] for e in entries], dtype=np.float64)
    boxes = np.array([e.box for e in entries], dtype=np.float64) if dataset.has_boxes else None
    return [e.name for e in entries], predicted, truth, sizes[:, 0], sizes[:, 1], boxes


def _update_metrics(settings, level, split, summary):
    path = run_dir(settings) / "metrics.json"
    data = read_json(path, {})
    data.setdefault(split, {})[level] = summary
    write_json(path, data)


def _worst_gallery(dataset, names, errors, draw_sets, path, title):
    import cv2

    from landmarks.conventions.draw import annotate

    order = np.argsort(-np.asarray(errors))[:WORST_SHOWN]
    tiles = []
    for i in order:
        image = cv2.imread(dataset.image_path(names[i]), cv2.IMREAD_COLOR)
        if image is None:
            continue
        tiles.append((annotate(image, **{k: v[i] for k, v in draw_sets.items()}), f"{names[i]}: {100 * errors[i]:.1f}%"))
    return plots.gallery(tiles, path, title=title) if tiles else None


def level1(settings):
    """Data (if missing), nets and solver, `caffe train`, predictions on every image, metrics,
    plots, report. Returns the level-1 metrics by split."""
    settings = settings.resolved()
    out = run_dir(settings) / "level1"
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    root, data_dir = prepare_level1_data(settings)
    record_settings(settings, "level1")  # only once data prep accepted them
    record_split(settings, data_dir)
    provenance.forget(run_dir(settings), "level1")  # nothing of an earlier level 1 (or cascade) is left to mix in
    deploy, weights = _train_level(settings, 1, data_dir)
    dataset = load_dataset(settings, root)
    predictions, skipped = _level1_predictions(dataset, deploy, weights, settings)
    names = [e.name for e in dataset.entries if e.name in predictions]
    _save_predictions(out / "predictions.txt", names, [predictions[n][0] for n in names], skipped)
    summaries, per_split = {}, {}
    for split in SPLITS:
        split_names, predicted, truth, widths, heights, boxes = _split_arrays(dataset, predictions, split)
        if not split_names:
            continue
        summaries[split] = metrics.summarise(predicted, truth, widths, heights, boxes)
        per_split[split] = (split_names, predicted, truth, metrics.image_errors(predicted, truth, widths, heights))
        _update_metrics(settings, "level1", split, summaries[split])
    figures = run_dir(settings) / "plots"
    plots.per_point_bars({f"level 1, {s}": m["per_point"] for s, m in summaries.items()}, figures / "per_point.png",
                         "Level 1: mean error per point")
    plots.error_histograms({f"level 1, {s}": per_split[s][3] for s in ("train", "test") if s in per_split},
                           figures / "histograms.png", "Level 1: per-image error, train and test")
    plots.ced_curves({f"level 1, {s}": per_split[s][3] for s in per_split}, figures / "ced.png")
    if "test" in per_split:
        names_t, pred_t, truth_t, err_t = per_split["test"]
        _worst_gallery(dataset, names_t, err_t, {"truth": truth_t, "level1": pred_t}, figures / "worst.png",
                       "Worst test images, level 1 (green: truth, red: level 1)")
    network_diagram(deploy, figures / "network.png")
    record = {"seconds": round(time.time() - started, 1), "predictions": str(out / "predictions.txt"),
              "skipped_images": len(skipped), "deploy": str(deploy), "weights": weights}
    write_json(out / "stage.json", provenance.stage_record(
        record, settings, {"data": Path(data_dir) / "manifest.json"},
        {"weights": weights, "deploy": deploy, "predictions": out / "predictions.txt"}))
    write_report(run_dir(settings))
    _print_summary(settings)
    return summaries


def crops(settings):
    """Level-2 data from level 1's predictions (data_prep.level2)."""
    settings = settings.resolved()
    level1_dir = run_dir(settings) / "level1"
    predictions = level1_dir / "predictions.txt"
    if not predictions.exists():
        raise WorkflowError(f"{predictions} is missing: run `make level1 RUN={settings.run}` first")
    root = dataset_path(settings)
    args = ["--dataset", root, "--dataset-format", settings.dataset_format, "--predictions", predictions,
            "--out", run_dir(settings) / "level2" / "data",
            "--thresh", settings.thresh, "--format", settings.format, "--size", settings.input_size,
            "--variant", settings.variant, "--split", settings.split, "--seed", settings.seed]
    if settings.limit:
        args += ["--limit", settings.limit]
    args += ["--train-crops", settings.train_crops, *augment_args(settings, 2)]
    if recipe(settings).crop != "article":
        args += ["--crop-rule", recipe(settings).crop]
    if settings.rebuild:
        args.append("--force")
    python_module("data_prep.level2", *args)
    record_settings(settings, "crops")  # only once data prep accepted them


def level2(settings):
    """`caffe train` on the crops, then the cascade on every image, scored against level 1 on
    the same images; plots, timing, report."""
    settings = settings.resolved()
    out = run_dir(settings) / "level2"
    data_dir = out / "data"
    if not (data_dir / "manifest.json").exists():
        raise WorkflowError(f"{data_dir} has no level-2 data: run `make crops RUN={settings.run}` first")
    try:  # the level 1 the tools would pair it with (workflow.runs decides), or none
        level1_model = finished_level(run_dir(settings), "level1")
    except UnfinishedRun as exc:
        raise WorkflowError(str(exc)) from None
    if level1_model is None:
        raise WorkflowError(f"level 1 of run {settings.run} is not trained: run `make level1 RUN={settings.run}` first")
    level1_model = tuple(map(str, level1_model))
    stale = provenance.crops_problems(run_dir(settings), settings)
    if stale:
        raise WorkflowError(f"{data_dir} cannot be used: {'; '.join(stale)}. "
                            f"Run `make crops RUN={settings.run}` first")
    record_settings(settings, "level2")
    provenance.forget(run_dir(settings), "level2")
    started = time.time()
    deploy, weights = _train_level(settings, 2, data_dir)
    root = dataset_path(settings)
    dataset = load_dataset(settings, root)
    from data_prep.predictions import read_predictions
    from landmarks.conventions.images import probe

    first = read_predictions(run_dir(settings) / "level1" / "predictions.txt")
    level1_pred = {}
    for name, points in zip(first.names, first.points):
        width, height, _, _ = probe(dataset.image_path(name))
        level1_pred[name] = (np.asarray(points, dtype=np.float64).reshape(5, 2), (width, height))
    cascade, skipped = _cascade_predictions(dataset, level1_pred, *level1_model, deploy, weights, settings)
    names = [e.name for e in dataset.entries if e.name in cascade]
    _save_predictions(out / "predictions.txt", names, [cascade[n][0] for n in names], skipped)
    cascade_pred = {n: (cascade[n][0], level1_pred[n][1]) for n in names}
    summaries, errors = {}, {}
    for split in SPLITS:
        split_names, pred2, truth, widths, heights, boxes = _split_arrays(dataset, cascade_pred, split)
        if not split_names:
            continue
        pred1 = np.stack([level1_pred[n][0] for n in split_names])
        summaries[split] = {"level1": metrics.summarise(pred1, truth, widths, heights, boxes),
                            "level2": metrics.summarise(pred2, truth, widths, heights, boxes)}
        errors[split] = (split_names, pred1, pred2, truth, metrics.image_errors(pred1, truth, widths, heights),
                         metrics.image_errors(pred2, truth, widths, heights))
        for level, summary in summaries[split].items():
            _update_metrics(settings, level, split, summary)
    figures = run_dir(settings) / "plots"
    if "test" in errors:
        names_t, p1, p2, truth, e1, e2 = errors["test"]
        plots.per_point_bars({"level 1 (test)": summaries["test"]["level1"]["per_point"],
                              "cascade (test)": summaries["test"]["level2"]["per_point"]},
                             figures / "per_point.png", "Mean error per point: level 1 vs cascade")
        plots.ced_curves({"level 1 (test)": e1, "cascade (test)": e2}, figures / "ced.png")
        boxes = [cascade[n][1] for n in names_t]
        _worst_gallery(dataset, names_t, e2, {"truth": truth, "level1": p1, "level2": p2, "box": boxes},
                       figures / "worst.png", "Worst test images after the cascade (green truth, red level 1, blue level 2)")
    plots.error_histograms({f"cascade, {s}": errors[s][5] for s in ("train", "test") if s in errors},
                           figures / "histograms.png", "Cascade: per-image error, train and test")
    _timing(settings, level1_model, (deploy, weights),
            [dataset.image_path(n) for n in names[:32]])
    record = {"seconds": round(time.time() - started, 1), "predictions": str(out / "predictions.txt"),
              "skipped_images": len(skipped), "deploy": str(deploy), "weights": weights}
    write_json(out / "stage.json", provenance.stage_record(
        record, settings, {"level1_weights": level1_model[1], "crops": data_dir / "manifest.json"},
        {"weights": weights, "deploy": deploy, "predictions": out / "predictions.txt"}))
    write_report(run_dir(settings))
    _print_summary(settings)
    return summaries


def _timing(settings, level1_model, level2_model, images):
    from landmarks.evaluate.timing import time_models

    try:
        # 10 repeats: enough for a median on a quiet machine, and ~10 s of a CPU demo
        result = time_models(level1=level1_model, level2=level2_model, images=images, repeats=10)
    except Exception as err:  # timing is a report extra: never lose a trained run over it
        print(f"forward timing failed: {err}", file=sys.stderr)
        return
    write_json(run_dir(settings) / "timing.json", result)


def demo(settings):
    """The whole chain on the built-in synthetic CelebA with the demo schedule."""
    level1(settings)
    crops(settings)
    return level2(settings)


def _print_summary(settings):
    data = read_json(run_dir(settings) / "metrics.json", {})
    print(f"\nRun {settings.run}: mean error, level 1 | cascade; over the image diagonal, the inter-ocular "
          "distance (and its failure rate at 10%), the face box's width")
    print(f"{'split':<7}{'images':>7}{'diagonal':>20}{'inter-ocular':>20}{'IOD >10%':>20}{'box':>20}")
    fmt = lambda v: f"{100 * v:.2f}%" if v is not None and v == v else "-"  # noqa: E731
    for split in SPLITS:
        m = data.get(split, {})
        if not m:
            continue
        columns = [[m.get(level, {}).get("mean_error") for level in ("level1", "level2")],
                   [(m.get(level, {}).get("interocular") or {}).get("mean_error") for level in ("level1", "level2")],
                   [(m.get(level, {}).get("interocular") or {}).get("failure_rate_0.10") for level in ("level1", "level2")],
                   [(m.get(level, {}).get("box") or {}).get("mean_error") for level in ("level1", "level2")]]
        cells = "".join(f"{fmt(a) + ' | ' + fmt(b):>20}" for a, b in columns)
        print(f"{split:<7}{m.get('level1', {}).get('images', 0):>7}{cells}")
    print(f"report: {run_dir(settings) / 'report.md'}\n")
