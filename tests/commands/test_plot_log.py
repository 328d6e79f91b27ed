"""tools/plot_log.py run as a user runs it: files written, what it prints, how it fails."""
import csv
import shutil
import struct
import subprocess
import sys

from support import ROOT

LOGS = ROOT / "tests" / "logs"


def plot_log(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "plot_log.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_two_logs_give_png_csvs_and_a_summary(tmp_path):
    result = plot_log(LOGS / "real_caffe_train.log", LOGS / "crafted_resumed.log", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    png = tmp_path / "loss_curves.png"
    assert png_size(png) == (1000, 600) and png.stat().st_size > 20_000
    names = ["logs_real_caffe_train.train.csv", "logs_real_caffe_train.test.csv",
             "logs_crafted_resumed.train.csv", "logs_crafted_resumed.test.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names + ["loss_curves.png"])
    for name in names + ["loss_curves.png"]:
        assert f"wrote {tmp_path / name}" in result.stdout
    with open(tmp_path / "logs_crafted_resumed.test.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["NumIters", "Seconds", "LearningRate", "loss"]
    assert [row[0] for row in rows[1:]] == ["0", "200", "500", "750"]
    out = result.stdout
    assert "logs/real_caffe_train: iterations 0..30 (31 train rows, 4 test rows), finished" in out
    assert "logs/crafted_resumed: iterations 0..750 (6 train rows, 4 test rows), finished" in out
    assert "resumed from iteration 300" in out
    # weighted (x100) values, as Caffe prints them: the crafted run's best test is 2.75 * 100
    assert "last test loss: 275 (iteration 750); min test: 275 (iteration 750)" in out


def test_labels_and_nonfinite_report(tmp_path):
    result = plot_log(LOGS / "crafted_new_style.log", LOGS / "crafted_old_style_nonfinite.log",
                      "--out", tmp_path, "--labels", "clean", "broken", "--smooth", "2", "--logy")
    assert result.returncode == 0, result.stderr
    assert "note: broken: train loss: 3 non-finite point(s) not drawn, first at iteration 20" in result.stdout
    assert "note: clean:" not in result.stdout
    assert (tmp_path / "broken.train.csv").read_text().splitlines()[3] == "20,2.000001,0.01,nan"
    assert png_size(tmp_path / "loss_curves.png") == (1000, 600)


def test_defaults_write_next_to_the_first_log_with_distinct_labels(tmp_path):
    for run in ("a", "b"):
        (tmp_path / run / "level1").mkdir(parents=True)
        shutil.copy(LOGS / "real_caffe_train.log", tmp_path / run / "level1" / "train.log")
    result = plot_log(tmp_path / "a" / "level1" / "train.log", tmp_path / "b" / "level1" / "train.log")
    assert result.returncode == 0, result.stderr
    # parent/stem would be level1/train for both: one more folder keeps them apart
    written = sorted(p.name for p in (tmp_path / "a" / "level1").iterdir())
    assert written == ["a_level1_train.test.csv", "a_level1_train.train.csv",
                       "b_level1_train.test.csv", "b_level1_train.train.csv", "loss_curves.png", "train.log"]


def test_errors_name_the_file_without_a_traceback(tmp_path):
    for path, why in ((LOGS / "not_a_caffe_log.txt", "no Caffe log lines"),
                      (tmp_path / "missing.log", "no such file")):
        result = plot_log(LOGS / "real_caffe_train.log", path, "--out", tmp_path)
        assert result.returncode == 1
        assert str(path) in result.stderr and why in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "loss_curves.png").exists()  # nothing written when any log is bad
    result = plot_log(LOGS / "real_caffe_train.log", "--labels", "a", "b")
    assert result.returncode == 2 and "one label per log" in result.stderr
    result = plot_log(LOGS / "real_caffe_train.log", LOGS / "crafted_resumed.log", "--labels", "a", "a")
    assert result.returncode == 2 and "--labels must differ" in result.stderr
