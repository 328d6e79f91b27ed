"""The real chain at a tiny size: synthetic CelebA, level 1 (`caffe train`, smoke schedule),
crops, level 2, the cascade evaluation, the report; and the tools run on what it trained."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from landmarks.train import caffe_log
from support import ROOT
from workflow import data, stages
from workflow.settings import Settings, WorkflowError, dataset_path, run_dir

COUNT = 120


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("workflow")
    settings = Settings(run="smoke", synthetic_count=COUNT, seed=5, schedule="smoke", gpu="",
                                 thresh=0.5, runs_root=str(root / "runs"), data_root=str(root / "data"))
    stages.level1(settings)
    stages.crops(settings)
    stages.level2(settings)
    return settings, run_dir(settings)


@pytest.mark.slow
def test_metrics_compare_both_levels_on_the_same_images(smoke_run):
    settings, run = smoke_run
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    assert 0 < test["level1"]["mean_error"] < 1 and 0 < test["level2"]["mean_error"] < 1
    assert test["level1"]["images"] == test["level2"]["images"] > 0
    assert len(test["level1"]["per_point"]) == 5
    total = sum(metrics[s]["level2"]["images"] for s in ("train", "val", "test"))
    assert total == COUNT  # every image scored, none dropped by the crop threshold
    resolved = json.loads((run / "settings.json").read_text())
    assert resolved["schedule"] == "smoke" and resolved["last_stage"] == "level2"


@pytest.mark.slow
def test_training_records_and_real_log(smoke_run):
    _, run = smoke_run
    for level in (1, 2):
        record = json.loads((run / f"level{level}" / "train.json").read_text())
        assert record["status"] == "done" and record["mode"] == "CPU"
        assert Path(record["final_weights"]).name == f"level{level}_iter_20.caffemodel"
        assert Path(record["final_weights"]).exists()
        log = caffe_log.parse_log(run / f"level{level}" / "train.log")
        assert log.finished and [row["NumIters"] for row in log.test] == [10, 20]  # no test before training
        assert log.train[-1]["NumIters"] == 20 and log.loss_weights["train"]["loss"] == 100
        assert all(np.isfinite(row["loss"]) for row in log.train if "loss" in row)
        header = (run / f"level{level}" / "plots" / "loss.train.csv").read_text().splitlines()[0]
        assert header.startswith("NumIters,Seconds,LearningRate")


@pytest.mark.slow
def test_predictions_cover_every_image(smoke_run):
    from data_prep.predictions import read_predictions

    _, run = smoke_run
    for level in (1, 2):
        predictions = read_predictions(run / f"level{level}" / "predictions.txt")
        assert len(predictions) == COUNT and predictions.points.shape == (COUNT, 5, 2)


@pytest.mark.slow
def test_report_links_existing_figures(smoke_run):
    _, run = smoke_run
    report = (run / "report.md").read_text()
    for needle in ("## Accuracy", "cascade (level 2)", "## Speed", "## Network", "loss_curves.png"):
        assert needle in report
    import re

    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(images) >= 7
    for image in images:
        assert (run / image).exists(), image
        assert (run / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    timing = json.loads((run / "timing.json").read_text())
    assert {row["what"] for row in timing["rows"]} >= {"level1", "level2", "cascade"}


@pytest.mark.slow
def test_cascade_eval_reproduces_the_runs_test_score(smoke_run, tmp_path):
    """tools/cascade_eval.py on the models the run trained, over the test split, must give
    the run's own test figures: same preprocessing, crop rule and metric."""
    from data_prep import readers

    settings, run = smoke_run
    dataset = readers.load(str(dataset_path(settings)))
    test = dataset.split("test")
    landmarks = tmp_path / "test_landmarks.txt"
    landmarks.write_text("".join(f"{e.name} " + " ".join(str(int(v)) for v in np.ravel(e.points)) + "\n" for e in test))
    stage1 = json.loads((run / "level1" / "stage.json").read_text())
    stage2 = json.loads((run / "level2" / "stage.json").read_text())
    out = tmp_path / "eval.json"
    tool = ROOT / "tools" / "cascade_eval.py"
    done = subprocess.run([sys.executable, str(tool), "--l1", stage1["deploy"], stage1["weights"],
                           "--l2", stage2["deploy"], stage2["weights"], "--landmarks", str(landmarks),
                           "--images", dataset.image_dir, "--json", str(out), "--boxes", "none"],  # as the run: whole images
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    assert result["images"] == len(test)
    for level in ("level1", "level2"):
        assert result[level]["mean_error"] == pytest.approx(metrics[level]["mean_error"], rel=1e-6)
    # the same through the dataset interface: the run folder's models, the root, its test split
    by_root = subprocess.run([sys.executable, str(tool), "--run", str(run), "--dataset", str(dataset_path(settings)),
                              "--subset", "test", "--json", str(tmp_path / "root.json"), "--quiet", "--boxes", "none"],
                             capture_output=True, text=True)
    assert by_root.returncode == 0, by_root.stderr[-2000:]
    again = json.loads((tmp_path / "root.json").read_text())
    assert again["images"] == len(test) and again["dataset_format"] == "celeba"
    for level in ("level1", "level2"):
        assert again[level]["mean_error"] == pytest.approx(metrics[level]["mean_error"], rel=1e-6)
        assert again[level]["interocular"] == pytest.approx(metrics[level]["interocular"], rel=1e-6, nan_ok=True)


def test_test_iter_covers_the_test_split_once(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"counts": {"written": {"train": 900, "test": 130}}}))
    assert data.test_iter(tmp_path, 64) == 3
    assert data.test_iter(tmp_path / "missing", 64) is None


def test_dataset_layout_is_detected_forced_or_refused(tmp_path):
    root = tmp_path / "mtfl"
    root.mkdir()
    (root / "training.txt").write_text("a/x.jpg 30 50 40 32 48 35 35 45 56 56\n")
    base = dict(run="t", gpu="", schedule="smoke", runs_root=str(tmp_path / "runs"), data_root=str(tmp_path / "data"))
    resolved = Settings(dataset=str(root), **base).resolved()
    assert resolved.dataset_format == "mtfl"
    assert data.level1_data_dir(resolved).name.startswith("mtfl-official-seed1-")
    assert Settings(**base).resolved().dataset_format == "celeba"  # the synthetic CelebA
    with pytest.raises(WorkflowError, match="not in the sun layout .no trainImageList.txt"):
        Settings(dataset=str(root), dataset_format="sun", **base).resolved()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WorkflowError, match="no dataset found"):
        Settings(dataset=str(empty), **base).resolved()


@pytest.mark.slow
def test_level1_on_a_sun_list_scores_every_normalisation(tmp_path):
    """The whole level-1 stage on a Sun et al. list (face boxes, backslash paths, no test
    list): the split is carved and recorded, and metrics.json has the box figures too."""
    from data_prep.synthetic import render_sample

    root = tmp_path / "sun"
    (root / "faces").mkdir(parents=True)
    lines = []
    for index in range(40):
        sample = render_sample(3, index)
        (root / "faces" / sample.name).write_bytes(sample.jpeg())
        points = sample.label.astype(np.float64)
        (x0, y0), (x1, y1) = points.min(axis=0) - 10, points.max(axis=0) + 10
        lines.append(f"faces\\{sample.name} {x0:g} {x1:g} {y0:g} {y1:g} " + " ".join(f"{v:g}" for v in points.reshape(-1)))
    (root / "trainImageList.txt").write_text("\n".join(lines) + "\n")
    settings = Settings(run="sun", dataset=str(root), schedule="smoke", gpu="", seed=2,
                                 runs_root=str(tmp_path / "runs"), data_root=str(tmp_path / "data"))
    stages.level1(settings)
    run = run_dir(settings)
    metrics = json.loads((run / "metrics.json").read_text())
    assert {s: metrics[s]["level1"]["images"] for s in ("train", "val", "test")} == {"train": 32, "val": 4, "test": 4}
    for split in ("train", "val", "test"):
        m = metrics[split]["level1"]
        assert m["box"]["images"] == m["interocular"]["images"] == m["images"]
        assert m["box"]["mean_error"] > m["mean_error"] > 0  # a face box is narrower than the image diagonal
    recorded = json.loads((run / "settings.json").read_text())
    assert recorded["dataset_format"] == "sun" and recorded["dataset_split"]["method"] == "carved from trainImageList.txt"
    assert "box width" in (run / "report.md").read_text()


@pytest.mark.slow
def test_real_schedule_runs_its_recipe_end_to_end(tmp_path):
    """SCHEDULE=real at a tiny size: level 1's predictions and the cascade's are the `real`
    recipe's (landmarks.runtime.inference), and level 2 trains on the upright crops that recipe cuts."""
    from data_prep.predictions import read_predictions
    from landmarks.runtime.backends import CaffeNet
    from landmarks.runtime.inference import RECIPES, Cascade

    settings = Settings(run="real", synthetic_count=40, seed=5, schedule="real", gpu="", iterations=20,
                                 augment=1, thresh=0.5, runs_root=str(tmp_path / "runs"),
                                 data_root=str(tmp_path / "data"))
    stages.level1(settings)
    stages.crops(settings)
    stages.level2(settings)
    run = run_dir(settings.resolved())
    manifest = json.loads((run / "level2" / "data" / "manifest.json").read_text())
    assert manifest["options"]["crop_rule"] == "upright"
    rows = (run / "level2" / "data" / "val.samples.tsv").read_text().splitlines()
    assert rows[0].split("\t")[17] == "crop_angle"
    records = {level: json.loads((run / level / "train.json").read_text()) for level in ("level1", "level2")}
    cascade = Cascade(CaffeNet(run / "level1" / "deploy.prototxt", records["level1"]["final_weights"]),
                      CaffeNet(run / "level2" / "deploy.prototxt", records["level2"]["final_weights"]),
                      RECIPES["real"])
    first, second = (read_predictions(run / level / "predictions.txt") for level in ("level1", "level2"))
    dataset = data.load_dataset(settings.resolved(), dataset_path(settings.resolved()))
    # every image in one batch, in the workflow's order, as it ran them (fewer than its 64 a
    # batch): the fc layer's BLAS call depends on the batch size in the last bits, and the
    # second look's box is cut on whole pixels, so another batch could move a box by one
    names = [entry.name for entry in dataset.entries]
    assert len(names) == 40 and set(names) == set(first.names)
    paths = [dataset.image_path(n) for n in names]
    points1, sizes = cascade.level1_batch(paths)
    saved1 = [first.as_dict()[n] for n in names]
    np.testing.assert_allclose(points1, saved1, atol=2e-3)
    # level 2 runs on level 1's points as saved (4 decimals), as the workflow does: a crop edge
    # rounded the other way would move an untrained level 2's answer by a fraction of a pixel
    points2, boxes = cascade.level2_batch(paths, saved1, sizes)
    np.testing.assert_allclose(points2, [second.as_dict()[n] for n in names], atol=2e-3)
    assert all(box.angle != 0 or box.fallback for box in boxes)  # turned crops, not the article's
