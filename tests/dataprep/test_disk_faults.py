"""A full disk and a read-only output folder (issue 11): one line naming the folder, exit
status 2, and nothing half-written left behind (a partial build would keep the disk full).

A full disk is a real one: a 1 MiB tmpfs, mounted where the test may (root with
CAP_SYS_ADMIN) and skipped with that reason elsewhere; the same faults are also made with
an RLIMIT_FSIZE limit in the child process, which works for anyone (it gives EFBIG, "file too
large", instead of ENOSPC). A read-only folder is a read-only tmpfs: root ignores permission bits.
"""
import os
import resource
import signal
import subprocess
import sys

import pytest

from landmarks.common.caffe_runtime import ROOT

COUNT = 24


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from data_prep import synthetic

    root = tmp_path_factory.mktemp("synthetic") / "celeba"
    synthetic.generate(root, COUNT, seed=3, workers=1, progress=False)
    return root


def _mount(path, options):
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip() or 'not root'}); "
                    "the RLIMIT_FSIZE tests cover a full disk")
    return path


@pytest.fixture
def full_disk(tmp_path):
    path = _mount(tmp_path / "small", "size=1m")
    yield path
    subprocess.run(["umount", str(path)], check=False)


@pytest.fixture
def read_only(tmp_path):
    path = _mount(tmp_path / "ro", "ro,size=1m")
    yield path
    subprocess.run(["umount", str(path)], check=False)


def _run(args, file_limit=None):
    def limit():
        if file_limit:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          preexec_fn=limit)


def _one_clean_line(proc, words):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert words in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Segmentation" not in proc.stderr


def _files_under(path):
    return [os.path.join(r, f) for r, _, files in os.walk(path) for f in files]


@pytest.mark.parametrize("fmt", ["hdf5", "lmdb", "both"])
def test_data_prep_on_a_full_disk(dataset, full_disk, fmt):
    out = full_disk / "l1"
    proc = _run(["-m", "data_prep.level1", "--dataset", str(dataset), "--out", str(out), "--format", fmt,
                 "--size", "96", "--quiet", "--workers", "1"])
    _one_clean_line(proc, f"no space left on {out}")
    assert _files_under(full_disk) == []  # no .partial left to keep the disk full


@pytest.mark.parametrize("workers", ["1", "2", "25"])  # 25: Pool.terminate() once hung here (data_prep.parallel)
def test_synthetic_data_on_a_full_disk(full_disk, workers):
    proc = _run(["-m", "data_prep.synthetic", "--out", str(full_disk / "syn"), "--count", "400", "--quiet",
                 "--workers", workers])
    _one_clean_line(proc, "no space left on")
    assert os.listdir(full_disk) == []


def test_data_prep_past_a_file_size_limit(dataset, tmp_path):
    out = tmp_path / "l1"
    proc = _run(["-m", "data_prep.level1", "--dataset", str(dataset), "--out", str(out), "--size", "96",
                 "--quiet", "--workers", "1"], file_limit=300_000)
    _one_clean_line(proc, f"no space left on {out} (file size limit reached)")
    assert _files_under(out) == []


def test_synthetic_data_past_a_file_size_limit(tmp_path):
    proc = _run(["-m", "data_prep.synthetic", "--out", str(tmp_path / "syn"), "--count", "40", "--quiet",
                 "--workers", "1"], file_limit=20_000)
    _one_clean_line(proc, "no space left on")
    assert not (tmp_path / "syn.partial").exists() and not (tmp_path / "syn").exists()


def test_data_prep_into_a_read_only_folder_says_so_before_the_work(dataset, read_only):
    proc = _run(["-m", "data_prep.level1", "--dataset", str(dataset), "--out", str(read_only / "l1"), "--quiet"])
    _one_clean_line(proc, f"cannot write {read_only}: read-only file system")
    assert "level 1" not in proc.stderr  # refused before any sample was made


def test_run_folder_lock_on_a_read_only_folder_is_a_disk_error(read_only):
    from landmarks.common import checks
    from landmarks.common.lock import run_folder_lock

    with pytest.raises(OSError) as caught:
        with run_folder_lock(read_only / "runs" / "x"):
            pass
    assert checks.disk_message(caught.value).startswith("cannot write") and "read-only" in checks.disk_message(caught.value)


def test_tools_say_they_cannot_write_before_loading_any_net(read_only, tmp_path):
    (tmp_path / "images").mkdir()
    landmarks = tmp_path / "lm.txt"
    landmarks.write_text("a.jpg " + " ".join(["10"] * 10) + "\n")
    model = ["--l1", str(tmp_path / "never-read.prototxt"), str(tmp_path / "never-read.caffemodel")]
    proc = _run(["tools/cascade_eval.py", *model, "--landmarks", str(landmarks), "--images", str(tmp_path / "images"),
                 "--json", str(read_only / "eval.json")])
    _one_clean_line(proc, f"cannot write {read_only}: read-only file system")
    proc = _run(["tools/demo.py", str(tmp_path / "x.jpg"), *model, "--out", str(read_only / "out")])
    _one_clean_line(proc, f"cannot write {read_only}: read-only file system")
    proc = _run(["tools/forward_timing.py", *model, "--json", str(read_only / "timing.json")])
    _one_clean_line(proc, f"cannot write {read_only}: read-only file system")


def test_plot_log_says_it_cannot_write(read_only, tmp_path):
    log = ROOT / "tests" / "logs"
    logs = sorted(p for p in log.iterdir() if p.suffix == ".log") if log.is_dir() else []
    if not logs:
        pytest.skip("no sample Caffe log in tests/logs")
    proc = _run(["tools/plot_log.py", str(logs[0]), "--out", str(read_only / "plots")])
    _one_clean_line(proc, f"cannot write {read_only}: read-only file system")


def test_plot_log_past_a_file_size_limit_leaves_no_cut_figure(tmp_path):
    """The loss figure is the largest file plot_log writes: past the limit it fails in one line
    and neither a cut PNG nor its temporary file stays behind."""
    log = ROOT / "tests" / "logs" / "real_caffe_train.log"
    out = tmp_path / "plots"
    proc = _run(["tools/plot_log.py", str(log), "--out", str(out)], file_limit=12_000)
    _one_clean_line(proc, "plot_log: error:")
    assert not [f for f in _files_under(out) if f.endswith(".png")], _files_under(out)
    proc = _run(["tools/plot_log.py", str(log), "--out", str(out)])
    assert proc.returncode == 0 and (out / "loss_curves.png").stat().st_size > 12_000
