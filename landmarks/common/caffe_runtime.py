"""Owns where the project's Caffe build is and what it can do (CPU or GPU).

The build (caffe_ext/build_caffe.py) records itself in build/caffe-build.json; everything that
runs Caffe asks here for the binary, the mode and the environment instead of guessing.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # landmarks/common/ -> the repository
BUILD_INFO = ROOT / "build" / "caffe-build.json"


class CaffeNotBuilt(RuntimeError):
    pass


def build_info():
    """The recorded build: {"binary", "mode": "CPU"|"GPU", "tree", ...}."""
    if not BUILD_INFO.exists():
        raise CaffeNotBuilt(f"{BUILD_INFO} is missing: run `make setup` first")
    return json.loads(BUILD_INFO.read_text())


def caffe_binary():
    """The `caffe` command: the venv's wrapper when present, else the build's binary."""
    wrapper = Path(sys.prefix) / "bin" / "caffe"
    if wrapper.exists():
        return str(wrapper)
    binary = build_info()["binary"]
    if not Path(binary).exists():
        raise CaffeNotBuilt(f"{binary} is missing: run `make setup` first")
    return binary


def gpu_count():
    """How many GPUs this machine shows to a GPU build of Caffe (0 for a CPU-only build)."""
    try:
        if build_info()["mode"] != "GPU":
            return 0
    except CaffeNotBuilt:
        return 0
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    out = subprocess.run([smi, "-L"], capture_output=True, text=True)
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def default_mode():
    """"GPU" when the build and the machine both have one, else "CPU"."""
    return "GPU" if gpu_count() > 0 else "CPU"


def quiet_env(env=None):
    """Environment for pycaffe/caffe with glog's INFO chatter kept off the console."""
    env = dict(os.environ if env is None else env)
    env.setdefault("GLOG_minloglevel", "1")
    return env
