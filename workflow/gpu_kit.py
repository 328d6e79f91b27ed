"""Owns the GPU kit: one folder that a bare machine with an NVIDIA GPU needs to prove our
CUDA build (`make gpu-kit`, then `bash gpu-kit/run.sh` there).

The kit holds the CUDA build of caffe_ext/build_caffe.py --cuda-check (caffe.bin, the
depthwise gtest, libcaffe.so, a ctypes interface for the cascade) with every shared library
they load except the C/C++ runtime, the NVIDIA driver and the CUDA libraries that such a
machine has; the generated nets and solvers; a small level-1 HDF5 set (synthetic faces,
gzip-compressed); a few JPEGs; this project's pure-Python modules that the cascade needs;
and caffe_ext/gpu_kit/{run.sh,check.py}. It is written to a temporary name and renamed.

The binaries and libraries travel as one `lib.tar.xz` (OpenBLAS alone is 36 MB, 4 MB in xz):
run.sh unpacks it into `lib/` on first use, with Python's tarfile (no xz tool needed).
"""
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from landmarks.common.protoio import prototxt_text, write_prototxt
from landmarks.nets import mobilenet as nets
from landmarks.nets import solvers

ROOT = Path(__file__).resolve().parent.parent
KIT_SOURCES = ROOT / "caffe_ext" / "gpu_kit"
CUDA_RECORD = ROOT / "build" / "caffe-cuda-build.json"
CACHE = ROOT / "build" / "gpu-kit-cache"  # the synthetic set and its level-1 data, reused
DEFAULT_OUT = ROOT / "gpu-kit"
MAX_BYTES = 60 * 1024 * 1024
TRAIN_BATCH = 128  # the article's batch
DATA_IMAGES = 1280  # 1,024 train / 128 val / 128 test at the builder's 80/10/10 split
CASCADE_IMAGES = 24
# What the kit does not carry: the C/C++ runtime (the target's own is newer), the driver,
# and the CUDA libraries the target has as wheels or an install.
SYSTEM_LIBS = ("linux-vdso", "ld-linux", "libc.so", "libm.so", "libpthread", "libdl.so", "librt.so",
               "libstdc++", "libgcc_s", "libcuda.so", "libcudart", "libcublas", "libcublasLt", "libcurand")
# This project's modules that the kit's cascade imports (pure Python: numpy, OpenCV, Pillow).
PY_MODULES = ("landmarks/__init__.py", "landmarks/conventions/__init__.py", "landmarks/conventions/crop.py",
              "landmarks/conventions/images.py", "landmarks/conventions/labels.py", "landmarks/runtime/__init__.py",
              "landmarks/runtime/inference.py", "landmarks/train/__init__.py", "landmarks/train/caffe_log.py")
# (solver file, iterations, mode, display): the GPU runs train "a few hundred" iterations;
# the CPU-side run only proves the wiring.
SOLVERS = (("solver_gpu.prototxt", 300, "GPU", 20), ("solver_gpu_all.prototxt", 100, "GPU", 10),
           ("solver_cpu.prototxt", 8, "CPU", 1))
SNAPSHOTS = "@SNAPSHOTS@"  # check.py puts its output folder here


class KitError(RuntimeError):
    pass


def cuda_build():
    """The CUDA build record; KitError when there is no CUDA build to pack."""
    if not CUDA_RECORD.exists():
        raise KitError(f"{CUDA_RECORD} is missing: run `make cuda-build` first")
    record = json.loads(CUDA_RECORD.read_text())
    if record.get("status") != "built":
        raise KitError(f"no CUDA build to pack: {record.get('reason', record.get('status'))}")
    return record


def _log(msg):
    print(f"[gpu-kit] {msg}", flush=True)


def compile_shim(record, out):
    tree = Path(record["tree"])
    cuda = Path(record["cuda_dir"])
    cmd = ["g++", "-O2", "-shared", "-fPIC", "-std=c++11", str(KIT_SOURCES / "cascade_net.cpp"),
           # the generated caffe.pb.h first: the source ships a stale one in include/
           f"-I{tree / 'temp' / 'src'}", f"-I{tree / 'include'}", f"-I{cuda / 'include'}",
           f"-L{tree / 'temp' / 'lib'}", "-lcaffe", "-lglog", "-lgflags", "-lprotobuf", "-lboost_system",
           "-Wl,-rpath,$ORIGIN", "-o", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise KitError(f"compiling {KIT_SOURCES / 'cascade_net.cpp'} failed:\n{result.stderr[-3000:]}")


def shared_libraries(binaries, search_path):
    """{soname: resolved path} of what `binaries` load, less SYSTEM_LIBS."""
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(map(str, search_path)))
    found = {}
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env).stdout
        for line in out.splitlines():
            parts = line.split()
            if not parts or any(parts[0].startswith(s) for s in SYSTEM_LIBS):
                continue
            if "=>" in parts and parts[parts.index("=>") + 1] == "not":
                raise KitError(f"{binary}: {parts[0]} not found")
            if "=>" in parts:
                found[parts[0]] = Path(parts[parts.index("=>") + 1])
    return found


def pack_binaries(record, kit):
    tree = Path(record["tree"])
    (kit / "bin").mkdir()
    (kit / "lib").mkdir()
    shutil.copy2(record["binary"], kit / "bin" / "caffe.bin")
    shutil.copy2(record["test_binary"], kit / "bin" / "test_conv_dw_layer.testbin")
    compile_shim(record, kit / "lib" / "libcascade_net.so")
    binaries = [kit / "bin" / "caffe.bin", kit / "bin" / "test_conv_dw_layer.testbin", kit / "lib" / "libcascade_net.so"]
    libs = shared_libraries(binaries, [tree / "temp" / "lib", Path(record["cuda_dir"]) / "lib"])
    for soname, path in sorted(libs.items()):
        shutil.copyfile(path, kit / "lib" / soname)
    for item in [*binaries, *(kit / "lib").iterdir()]:
        subprocess.run(["strip", "--strip-unneeded", str(item)], check=True)
    return sorted(libs)


def dw_shapes_text():
    """The gtest's shape file: the level-1 net's depthwise layers, one per line."""
    lines = ["# C H W kernel stride pad: the level-1 deploy net's ConvolutionDepthwise layers"]
    lines += [" ".join(map(str, shape)) for shape in nets.depthwise_shapes(nets.NetConfig(), "level1")]
    return "\n".join(lines) + "\n"


def write_nets(kit, test_count):
    """The nets and solvers check.py runs; paths relative to the kit folder (its cwd)."""
    folder = kit / "nets"
    folder.mkdir()
    train, test = ("data/train.txt",), ("data/test.txt",)
    for dw in nets.DEPTHWISE_CHOICES:
        cfg = nets.NetConfig(depthwise=dw)
        net = nets.train_test_net(cfg, "hdf5", train, test, TRAIN_BATCH, TRAIN_BATCH, "level1")
        write_prototxt(net, folder / f"level1_train_b128_{dw}.prototxt")
        write_prototxt(nets.deploy_net(cfg, "level1"), folder / f"level1_deploy_b1_{dw}.prototxt")
    write_prototxt(nets.deploy_net(nets.NetConfig(), "level2"), folder / "level2_deploy_b1_layer.prototxt")
    (folder / "dw_shapes.txt").write_text(dw_shapes_text())
    article = solvers.get_schedule("article")
    for name, iterations, mode, display in SOLVERS:
        schedule = replace(article, display=display, test_interval=max(iterations, 1), snapshot=0, random_seed=1,
                           stepvalue=(10 * iterations,))
        s = solvers.solver(schedule, 1, "nets/level1_train_b128_layer.prototxt", f"{SNAPSHOTS}/level1",
                           mode=mode, test_iter=max(1, test_count // TRAIN_BATCH), max_iter=iterations)
        (folder / name).write_text(prototxt_text(s))


def level1_data(workers):
    """The cached synthetic set and its level-1 HDF5 folder (built once)."""
    images, data = CACHE / f"synthetic-{DATA_IMAGES}", CACHE / f"level1-{DATA_IMAGES}"
    for cmd in (["data_prep.synthetic", "--out", images, "--count", DATA_IMAGES, "--seed", 7, "--quiet"],
                ["data_prep.level1", "--dataset", images, "--out", data, "--format", "hdf5", "--split", "random",
                 "--train-fraction", 0.8, "--val-fraction", 0.1, "--seed", 7, "--quiet", "--workers", workers]):
        result = subprocess.run([sys.executable, "-m", *map(str, cmd)], capture_output=True, text=True, cwd=ROOT)
        if result.returncode != 0:
            raise KitError(f"python -m {cmd[0]} failed:\n{result.stderr[-2000:]}")
    return images, data


def pack_data(kit, workers):
    """data/{train,test}.h5 (gzip) with their list files, and JPEGs for the cascade."""
    import h5py

    images, data = level1_data(workers)
    (kit / "data").mkdir()
    counts = {}
    for split in ("train", "test"):
        # relative shard paths are the repository's (an absolute one stays as it is)
        shards = [ROOT / line.strip() for line in (data / "hdf5" / f"{split}.txt").read_text().splitlines()
                  if line.strip()]
        arrays = {"data": [], "label": []}
        for shard in shards:
            with h5py.File(shard, "r") as f:
                for key in arrays:
                    arrays[key].append(f[key][...])
        with h5py.File(kit / "data" / f"{split}.h5", "w") as f:
            for key, parts in arrays.items():
                value = np.concatenate(parts).astype(np.float32)
                f.create_dataset(key, data=value, compression="gzip", compression_opts=6,
                                 chunks=(min(64, len(value)),) + value.shape[1:])
                counts[split] = len(value)
        (kit / "data" / f"{split}.txt").write_text(f"data/{split}.h5\n")
    (kit / "images").mkdir()
    for jpeg in sorted(images.rglob("*.jpg"))[:CASCADE_IMAGES]:
        shutil.copyfile(jpeg, kit / "images" / jpeg.name)
    return counts


def compress_libraries(kit):
    """kit/lib/ -> kit/lib.tar.xz (members under lib/); the folder is removed."""
    with tarfile.open(kit / "lib.tar.xz", "w:xz", preset=6) as tar:
        tar.add(kit / "lib", arcname="lib")
    shutil.rmtree(kit / "lib")


def unpack_libraries(kit, dest):
    """The inverse, as run.sh does it: dest/lib/ (for checks on this machine)."""
    with tarfile.open(Path(kit) / "lib.tar.xz") as tar:
        tar.extractall(dest, filter="tar")


def folder_bytes(folder):
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())


def build_kit(out=DEFAULT_OUT, workers=2):
    """Writes the kit to `out` (staged, then renamed); returns a summary dict."""
    record = cuda_build()
    out = Path(out)
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    _log("binaries and the libraries they load")
    libs = pack_binaries(record, staging)
    _log("data (synthetic faces, level-1 HDF5) and JPEGs")
    counts = pack_data(staging, workers)
    _log("nets and solvers")
    write_nets(staging, counts["test"])
    for rel in PY_MODULES:
        (staging / "py" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, staging / "py" / rel)
    for name in ("run.sh", "check.py", "README.md"):
        shutil.copyfile(KIT_SOURCES / name, staging / name)
    summary = {"cuda_build": record, "libraries": libs, "samples": counts}
    _log("compressing lib/ into lib.tar.xz")
    summary["members"] = sorted(f"lib/{p.name}" for p in (staging / "lib").iterdir())
    compress_libraries(staging)
    summary["bytes"] = size = folder_bytes(staging)
    (staging / "kit.json").write_text(json.dumps(summary, indent=2) + "\n")
    if size > MAX_BYTES:
        raise KitError(f"{staging}: {size / 2**20:.1f} MiB, over the {MAX_BYTES / 2**20:.0f} MiB limit")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return summary
