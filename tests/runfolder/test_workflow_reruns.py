"""A run folder never lies (issues 11, 23): a rerun of level 1 with other settings leaves nothing
of the old cascade beside it, an interrupted rerun leaves no mixed cascade for the tools and no
stale report, level 2 refuses crops made from an older level 1, settings are recorded only once
accepted (a GPU this build lacks included), and a second process on a run folder is turned away."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from landmarks.common.lock import RunFolderBusy, run_folder_lock
from support import ROOT
from landmarks.common import caffe_runtime
from workflow import runs, stages
from workflow.settings import Settings, WorkflowError, dataset_path, run_dir

COUNT = 60


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("reruns")
    settings = Settings(run="r", synthetic_count=COUNT, seed=5, schedule="smoke", gpu="", thresh=0.5,
                                 runs_root=str(root / "runs"), data_root=str(root / "data"))
    stages.level1(settings)
    stages.crops(settings)
    stages.level2(settings)
    return settings, run_dir(settings)


@pytest.mark.slow
def test_level1_rerun_with_other_settings_leaves_no_old_cascade(finished_run):
    """Wrong results 2 and 3: LIMIT=40 after a finished cascade; the summary and the report
    must not put the new level 1 beside the old cascade, and level 2 must refuse the old crops."""
    from dataclasses import replace

    settings, run = finished_run
    before = json.loads((run / "metrics.json").read_text())
    assert "level2" in before["test"]
    limited = replace(settings, limit=40)
    stages.level1(limited)
    after = json.loads((run / "metrics.json").read_text())
    assert all(set(levels) == {"level1"} for levels in after.values()), after
    assert sum(after[s]["level1"]["images"] for s in after) == 40
    assert not (run / "timing.json").exists()
    report = (run / "report.md").read_text()
    assert "cascade (level 2)" not in report and "same images as level 1" not in report
    assert "not part of this run's results" in report
    with pytest.raises(WorkflowError, match="other level-1 predictions.*make crops"):
        stages.level2(limited)
    stages.crops(limited)
    stages.level2(limited)
    final = json.loads((run / "metrics.json").read_text())
    assert final["test"]["level1"]["images"] == final["test"]["level2"]["images"]
    assert sum(final[s]["level2"]["images"] for s in final) == 40
    stage2 = json.loads((run / "level2" / "stage.json").read_text())
    stage1 = json.loads((run / "level1" / "stage.json").read_text())
    assert stage2["made_from"]["inputs"]["level1_weights"]["sha256"] == stage1["outputs"]["weights"]["sha256"]
    assert "not part of this run's results" not in (run / "report.md").read_text()


@pytest.mark.slow
def test_crops_with_other_options_are_refused(finished_run):
    from dataclasses import replace

    settings, run = finished_run
    other = replace(settings, thresh=0.25, limit=40)
    with pytest.raises(WorkflowError, match="thresh 0.5, the settings now say 0.25"):
        stages.level2(other)


def test_refused_options_are_not_recorded(tmp_path):
    settings = Settings(run="bad", synthetic_count=60, schedule="smoke", gpu="", thresh=-1,
                                 runs_root=str(tmp_path / "runs"), data_root=str(tmp_path / "data"))
    for stage in (stages.level1, stages.crops, stages.level2):
        with pytest.raises(WorkflowError, match=r"THRESH \(--thresh\) must be above 0"):
            stage(settings)
    assert not (tmp_path / "runs" / "bad").exists()


@pytest.mark.parametrize("args, message", [
    (["level1", "--input-size", "12"], "SIZE (--input-size) must be at least 16"),
    (["level1", "--count", "0"], "COUNT (--count) must be at least 10"),
    (["crops", "--thresh", "0"], "THRESH (--thresh) must be above 0"),
    (["level1", "--run", "../../escape"], "RUN (--run) must be a plain folder name"),
    (["report", "--run", "nonexistent-run"], "holds no run"),
    (["level1", "--run", "test-no-such-gpu", "--count", "10", "--gpu", str(caffe_runtime.gpu_count())],
     f"GPU={caffe_runtime.gpu_count()}"),
])
def test_bad_options_end_in_one_line_and_status_2(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "tools/run.py", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_second_process_on_a_run_folder_is_turned_away(tmp_path):
    import shutil

    name = f"test-lock-{os.getpid()}"  # tools/run.py works in the checkout's runs/
    run = ROOT / "runs" / name
    script = ("import sys, time\nfrom landmarks.common.lock import run_folder_lock\n"
              "with run_folder_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", script, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderBusy, match=f"in use by PID {holder.pid}"):
            with run_folder_lock(run):
                pass
        proc = subprocess.run([sys.executable, "tools/run.py", "level1", "--run", name, "--schedule", "smoke",
                               "--gpu", ""], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 2 and f"in use by PID {holder.pid}" in proc.stderr
        assert "Traceback" not in proc.stderr and os.listdir(run) == [".lock"]  # nothing was done
    finally:
        holder.kill()
        holder.wait()
    try:
        with run_folder_lock(run):  # the kernel dropped the killed holder's lock: no stale lock
            pass
    finally:
        shutil.rmtree(run, ignore_errors=True)


def test_a_dataset_refused_by_data_prep_is_not_recorded(tmp_path):
    root = tmp_path / "bad-list"  # an MTFL layout whose only line is unusable: data prep refuses it
    root.mkdir()
    (root / "training.txt").write_text("faces/a.jpg 1 2 3\n")
    settings = Settings(run="nodata", dataset=str(root), schedule="smoke", gpu="",
                                 runs_root=str(tmp_path / "runs"), data_root=str(tmp_path / "data"))
    with pytest.raises(WorkflowError, match="data_prep.level1 failed"):
        stages.level1(settings)
    assert not (tmp_path / "runs" / "nodata" / "settings.json").exists()
    missing = Settings(run="nodata", dataset=str(tmp_path / "no-such-root"), schedule="smoke", gpu="",
                                runs_root=str(tmp_path / "runs"), data_root=str(tmp_path / "data"))
    with pytest.raises(WorkflowError, match="no-such-root: no such dataset folder"):
        stages.level1(missing)
    assert not (tmp_path / "runs" / "nodata" / "settings.json").exists()


@pytest.mark.slow
def test_tools_refuse_a_level2_made_from_another_level1(finished_run, tmp_path):
    """The tools' --run never pairs a level 2 with a level 1 it was not made from."""
    import shutil

    from workflow import runs

    _, run = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    assert runs.run_models(copy)["level2"] is not None
    stage2 = json.loads((copy / "level2" / "stage.json").read_text())
    stage2["made_from"]["inputs"]["level1_weights"]["sha256"] = "another level 1"
    (copy / "level2" / "stage.json").write_text(json.dumps(stage2))
    with pytest.raises(FileNotFoundError, match="made from an earlier level 1.*make crops"):
        runs.run_models(copy)


def _copy_of(finished_run, root):
    """(settings, run folder) of a copy of the finished run under `root`, to rerun in."""
    settings, run = finished_run
    copy = root / "runs" / run.name
    shutil.copytree(run, copy)
    return replace(settings, runs_root=str(root / "runs")), copy


def _ctrl_c_once_training(log, timeout=120):
    """A thread that sends this process SIGINT (a terminal's Ctrl-C) once `log` (rewritten
    since now: not the earlier run's) shows Caffe iterating, so that it lands in the driver."""
    started = time.time()

    def training():
        try:
            return log.stat().st_mtime > started and "Iteration 1," in log.read_text(errors="replace")
        except OSError:
            return False

    def wait_then_interrupt():
        deadline = time.time() + timeout
        while not training() and time.time() < deadline:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=wait_then_interrupt, daemon=True)
    thread.start()
    return thread


def _tools_refuse(settings, run, tmp_path, match):
    """predict.py and ship_models.py --run refuse the run folder in one line naming it."""
    images = sorted(str(p) for p in dataset_path(settings).rglob("*.jpg"))[:1]
    assert images
    for command in (["tools/predict.py", *images, "--run", str(run), "--out", str(tmp_path / "p.csv")],
                    ["tools/ship_models.py", "--run", str(run), "--out", str(tmp_path / "shipped")]):
        proc = subprocess.run([sys.executable, *command], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert proc.returncode == 2, command[0] + proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert str(run / "level1") in proc.stderr and match in proc.stderr, proc.stderr
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "shipped").exists()


@pytest.mark.slow
def test_a_level1_rerun_stopped_by_ctrl_c_leaves_no_mixed_cascade(finished_run, tmp_path):
    """Issue 23, wrong results 1 and 2: Ctrl-C during a level-1 rerun of a finished cascade.
    The tools must not pair the half-trained level 1 with the old level 2, and report.md must
    not show the forgotten results as done."""
    settings, run = _copy_of(finished_run, tmp_path)
    assert runs.run_models(run)["level2"] is not None and (run / "report.md").exists()
    stopper = _ctrl_c_once_training(run / "level1" / "train.log")
    with pytest.raises(KeyboardInterrupt, match="Resume with RESUME=1"):
        stages.level1(replace(settings, iterations=100000))  # long enough to be stopped mid-way
    stopper.join()
    assert json.loads((run / "level1" / "train.json").read_text())["status"] == "interrupted"
    with pytest.raises(FileNotFoundError, match=r"level1: its last training did not finish \(train.json status: "
                                                r"interrupted\); run `make level1 RUN=r` again"):
        runs.run_models(run)
    assert not (run / "report.md").exists()  # forgotten with the results; `make report` rebuilds it
    _tools_refuse(settings, run, tmp_path, "status: interrupted")


@pytest.mark.slow
def test_a_level1_rerun_stopped_after_training_leaves_no_mixed_cascade(finished_run, tmp_path, monkeypatch):
    """Ctrl-C after the rerun's training finished, while it predicts: train.json says "done"
    with new weights, but the stage did not finish, and the old level 2 was not made from them."""
    settings, run = _copy_of(finished_run, tmp_path)

    def ctrl_c(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "_level1_predictions", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        stages.level1(settings)
    assert json.loads((run / "level1" / "train.json").read_text())["status"] == "done"
    with pytest.raises(FileNotFoundError, match="level1: its last run did not finish .no stage.json"):
        runs.run_models(run)
    with pytest.raises(WorkflowError, match="no stage.json"):
        stages.level2(settings)
    _tools_refuse(settings, run, tmp_path, "no stage.json")


def test_a_level2_not_made_from_the_current_level1_or_changed_since_is_refused(tmp_path):
    """Level 2's recorded level-1 weights are not the current level 1's, or its own weights are
    not those its stage finished with: refused by the one place that decides a run folder's models."""
    from support import finished_run_folder, fixed_output_models

    (d1, w1), (d2, w2) = fixed_output_models(tmp_path)
    run = finished_run_folder(tmp_path / "runs" / "x", [(d1, w1), (d2, w2)])
    assert runs.run_models(run)["level2"] is not None
    other = tmp_path / "other.caffemodel"  # level 1 trained again: other weights, a finished stage
    other.write_bytes(Path(w1).read_bytes() + b"\0")
    finished_run_folder(tmp_path / "again", [(d1, other)])
    shutil.copy(tmp_path / "again" / "level1" / "stage.json", run / "level1" / "stage.json")
    shutil.copy(tmp_path / "again" / "level1" / "train.json", run / "level1" / "train.json")
    with pytest.raises(FileNotFoundError, match=r"level2: level 2 was made from an earlier level 1; run `make crops"):
        runs.run_models(run)
    Path(w2).write_bytes(Path(w2).read_bytes() + b"\0")  # level 2's own weights changed since its stage
    with pytest.raises(FileNotFoundError, match=r"level2: .*level2.caffemodel is not the weights file"):
        runs.run_models(run)


def test_a_gpu_this_build_lacks_is_refused_before_anything_is_written(tmp_path):
    """Issue 23, wrong result 3: GPU=0 on a CPU-only build (here: one GPU more than this build
    and machine show) is refused before data prep, settings.json or forgetting any result."""
    run = tmp_path / "runs" / "g"
    run.mkdir(parents=True)
    kept = {"settings.json": '{"run": "g", "gpu": ""}', "metrics.json": '{"test": {"level1": {"images": 6}}}',
            "report.md": "# Run `g`\n"}  # an earlier run's
    for name, text in kept.items():
        (run / name).write_text(text)
    gpu = str(caffe_runtime.gpu_count())
    settings = Settings(run="g", synthetic_count=COUNT, schedule="smoke", gpu=gpu,
                        runs_root=str(tmp_path / "runs"), data_root=str(tmp_path / "data"))
    for stage in (stages.level1, stages.crops, stages.level2):
        with pytest.raises(WorkflowError, match=f"GPU={gpu}"):
            stage(settings)
    assert {p.name: p.read_text() for p in run.iterdir()} == kept
    assert not (tmp_path / "data").exists()
