"""Owns the CUDA toolkit that the compile-checked CUDA build uses: NVIDIA's PyPI wheels
(nvcc, cuBLAS, cuRAND, the CUDA runtime), pinned by version and sha256, unpacked into one
folder that looks like a CUDA install (`bin/nvcc`, `include/`, `lib64/`, `nvvm/`).

CUDA 13.0 is pinned on purpose: it is what the lent GPU machines' driver (580) runs, so a
binary built here loads there with the CUDA 13 runtime libraries that machine has.
Only the standard library is used (it runs before the virtual environment exists).

    python3 caffe_ext/cuda_toolkit.py        # prints the toolkit folder, or why there is none
"""
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
WHEELS = BUILD / "downloads" / "cuda-wheels"
TOOLKIT = BUILD / "cuda-13.0"  # the assembled toolkit; a marker inside names the pins it holds

# (package, version, sha256 of the manylinux x86-64 wheel)
PINNED = [
    ("nvidia-cuda-nvcc", "13.0.88", "56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03"),
    ("nvidia-cuda-crt", "13.0.88", "2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4"),
    ("nvidia-nvvm", "13.0.88", "c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0"),
    ("nvidia-cuda-cccl", "13.0.85", "e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649"),
    ("nvidia-cuda-runtime", "13.0.96", "7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"),
    ("nvidia-cublas", "13.0.2.14", "0cf238ffdbe46c00cb9aa98e7bca745c223a5ca5a53e686ac8b3e5a08fe80d6c"),
    ("nvidia-curand", "10.4.0.35", "1aee33a5da6e1db083fe2b90082def8915f30f3248d5896bcec36a579d941bfc"),
]
PLATFORMS = ["manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux_2_12_x86_64", "manylinux2010_x86_64"]
# The link-time names Caffe's Makefile asks for (-lcudart -lcublas -lcurand); wheels ship
# only the versioned sonames.
LINK_NAMES = ("libcudart", "libcublas", "libcublasLt", "libcurand")


class ToolkitUnavailable(RuntimeError):
    """The wheels could not be had (no registry, wrong platform, a hash mismatch)."""


def log(msg):
    print(f"[cuda_toolkit] {msg}", flush=True)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _marker_text():
    return "".join(f"{name}=={version} {digest}\n" for name, version, digest in PINNED)


def _wheel_for(name, version):
    stem = f"{name.replace('-', '_')}-{version}-"
    found = sorted(WHEELS.glob(stem + "*.whl"))
    return found[0] if found else None


def download():
    """The pinned wheels in WHEELS, downloaded once and checked against their hashes."""
    missing = [f"{n}=={v}" for n, v, _ in PINNED if _wheel_for(n, v) is None]
    if missing:
        if sys.platform != "linux" or os.uname().machine != "x86_64":
            raise ToolkitUnavailable(f"the CUDA wheels are x86-64 Linux only (this is {sys.platform} {os.uname().machine})")
        WHEELS.mkdir(parents=True, exist_ok=True)
        log(f"downloading {len(missing)} CUDA wheels from PyPI ({', '.join(missing)})")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
               "--disable-pip-version-check", "--python-version", "3.11", "-d", str(WHEELS)]
        for platform in PLATFORMS:
            cmd += ["--platform", platform]
        result = subprocess.run(cmd + missing, capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise ToolkitUnavailable(f"pip download failed: {last}")
    wheels = []
    for name, version, digest in PINNED:
        wheel = _wheel_for(name, version)
        if wheel is None:
            raise ToolkitUnavailable(f"{name}=={version}: no wheel after download")
        actual = sha256(wheel)
        if actual != digest:
            wheel.unlink()
            raise ToolkitUnavailable(f"{wheel}: sha256 {actual} != pinned {digest}; removed it")
        wheels.append(wheel)
    return wheels


def assemble(wheels):
    """Unpacks the wheels' nvidia/cu13 trees into TOOLKIT (staged, then renamed)."""
    staging = TOOLKIT.with_name(TOOLKIT.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    prefix = "nvidia/cu13/"
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                if not info.filename.startswith(prefix) or info.is_dir():
                    continue
                target = staging / info.filename[len(prefix):]
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                if (info.external_attr >> 16) & 0o111 or "/bin/" in "/" + info.filename[len(prefix):]:
                    target.chmod(0o755)
    lib = staging / "lib"
    for stem in LINK_NAMES:
        versioned = sorted(lib.glob(stem + ".so.*"))
        if not versioned:
            raise ToolkitUnavailable(f"{stem}.so.* is not in the wheels")
        (lib / f"{stem}.so").symlink_to(versioned[0].name)
    (staging / "lib64").symlink_to("lib")
    (staging / ".pinned").write_text(_marker_text())
    if TOOLKIT.exists():
        shutil.rmtree(TOOLKIT)
    staging.rename(TOOLKIT)


def ensure_toolkit():
    """The toolkit folder, assembled once per set of pins; ToolkitUnavailable if it cannot be."""
    marker = TOOLKIT / ".pinned"
    if marker.exists() and marker.read_text() == _marker_text():
        return TOOLKIT
    wheels = download()
    log(f"unpacking {len(wheels)} wheels into {TOOLKIT}")
    assemble(wheels)
    return TOOLKIT


def main():
    try:
        print(ensure_toolkit())
    except ToolkitUnavailable as exc:
        sys.exit(f"[cuda_toolkit] unavailable: {exc}")


if __name__ == "__main__":
    main()
