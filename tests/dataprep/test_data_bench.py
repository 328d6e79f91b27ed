"""tools/bench_data.py runs and reports what it promises (its timings are not tested here)."""
import json
import subprocess
import sys

import pytest

from support import ROOT

TOOL = ROOT / "tools" / "bench_data.py"


def test_bench_data_reports_both_paths(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(TOOL), "--count", "6", "--workers", "2", "--json", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "speedup" in result.stdout and "images/s" in result.stdout
    report = json.loads(out.read_text())
    assert {"naive_images_per_s", "ours_images_per_s", "speedup"} <= report.keys()
    assert report["labels_identical"] and report["pixels_identical_across_workers"]
    assert report["speedup"] > 0 and report["count"] == 6
    # the calibration figures: a 1/8 decode of the same files must be cheaper than a full one
    assert 0 < report["reduced_decode_ms"] < report["full_decode_ms"]
    assert report["target_speedup"] == 6 and report["target_met"] == (report["speedup"] >= 6)
    assert "real CelebA per SPEC.md" in result.stdout
    assert not list(tmp_path.glob("*.tmp*"))  # the JSON was written under a temporary name, then renamed


def test_bench_data_help():
    result = subprocess.run([sys.executable, str(TOOL), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--json" in result.stdout and "--count" in result.stdout


def test_bench_data_on_a_celeba_root(tmp_path):
    """--celeba times the dataset's own JPEGs (here a synthetic root; on a workstation, CelebA)."""
    from data_prep import synthetic

    root = tmp_path / "celeba"
    synthetic.generate(root, 12, seed=4, workers=1, progress=False)
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(TOOL), "--dataset", str(root), "--count", "5", "--passes", "1",
                             "--repeat", "1", "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["count"] == 5 and report["labels_identical"]
    missing = subprocess.run([sys.executable, str(TOOL), "--celeba", str(tmp_path / "nowhere")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "nowhere" in missing.stderr


@pytest.mark.parametrize("option", [["--size", "0"], ["--median-width", "0"], ["--workers", "0"], ["--count", "0"]])
def test_bad_options_are_refused_before_any_work(option):
    import subprocess
    import sys

    from landmarks.common.caffe_runtime import ROOT

    proc = subprocess.run([sys.executable, "tools/bench_data.py", *option], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and option[0] in proc.stderr and "Traceback" not in proc.stderr
