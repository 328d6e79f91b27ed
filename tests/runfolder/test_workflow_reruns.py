"""A run folder never lies (issue 11): a rerun of level 1 with other settings leaves nothing of
the old cascade beside it, level 2 refuses crops made from an older level 1, settings are
recorded only once accepted, and a second process on a run folder is turned away."""
import json
import os
import subprocess
import sys

import pytest

from landmarks.common.lock import RunFolderBusy, run_folder_lock
from support import ROOT
from workflow import stages
from workflow.settings import Settings, WorkflowError, run_dir

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
