"""The CUDA compile check and the GPU kit, as far as a machine without a GPU allows: the CUDA
build holds our kernels, the depthwise gtest passes on the CPU tree, the kit is complete
(every library its binaries load is inside it, bar the C/C++ runtime, the driver and CUDA's
own), stays under 60 MiB, and its script runs the CPU-side steps and says "no GPU"."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from support import ROOT
from workflow import gpu_kit

CUDA_RECORD = ROOT / "build" / "caffe-cuda-build.json"
CPU_TESTBIN = ROOT / "build" / "caffe" / ".temp_release" / "test" / "test_conv_dw_layer.testbin"


def cuda_record():
    if not CUDA_RECORD.exists():
        pytest.skip(f"{CUDA_RECORD} missing: the CUDA compile check did not run (make cuda-build)")
    record = json.loads(CUDA_RECORD.read_text())
    if record["status"] != "built":
        pytest.skip(f"CUDA compile check skipped: {record.get('reason')}")
    return record


def test_cuda_build_holds_our_depthwise_kernels():
    record = cuda_record()
    # nvcc 13 makes a template kernel's host stub a local symbol: read the full table
    out = subprocess.run(["nm", "--defined-only", record["library"]], capture_output=True, text=True)
    for kernel in ("DepthwiseForward", "DepthwiseBackwardInput", "DepthwiseWeightPartials", "DepthwiseBiasPartials"):
        assert f"__device_stub__ZN5caffe{len(kernel)}{kernel}IfE" in out.stdout, kernel
    assert record["depthwise_kernels"] == sorted(["DepthwiseForward", "DepthwiseBackwardInput",
                                                  "DepthwiseWeightPartials", "DepthwiseBiasPartials"])
    assert record["archs"] == ["sm_90"]
    assert Path(record["binary"]).exists() and Path(record["test_binary"]).exists()


def test_depthwise_gtest_passes_on_the_cpu_build():
    assert CPU_TESTBIN.exists(), f"{CPU_TESTBIN}: make setup builds it"
    result = subprocess.run([str(CPU_TESTBIN)], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, GLOG_minloglevel="2"))
    assert result.returncode == 0, result.stdout[-3000:]
    assert "ConvolutionDepthwiseTest/0.MatchesGroupedConvolution" in result.stdout
    assert "[  PASSED  ] 2 tests" in result.stdout  # float and double on the CPU


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    cuda_record()
    out = tmp_path_factory.mktemp("kit") / "gpu-kit"
    summary = gpu_kit.build_kit(out)
    return out, summary


def test_kit_is_complete_and_under_its_size_limit(kit):
    out, summary = kit
    assert gpu_kit.folder_bytes(out) <= gpu_kit.MAX_BYTES
    assert not out.with_name(out.name + ".partial").exists()
    for rel in ("run.sh", "check.py", "README.md", "bin/caffe.bin", "bin/test_conv_dw_layer.testbin",
                "lib.tar.xz", "nets/level1_train_b128_layer.prototxt",
                "nets/level1_train_b128_group.prototxt", "nets/level1_deploy_b1_group.prototxt",
                "nets/solver_gpu.prototxt", "data/train.h5", "data/train.txt", "py/landmarks/runtime/inference.py"):
        assert (out / rel).exists(), rel
    assert not (out / "lib").exists()  # it travels compressed
    assert "lib/libcascade_net.so" in summary["members"] and "lib/libcaffe.so.1.0.0-rc3" in summary["members"]
    assert summary["samples"]["train"] >= 1000
    # The level-1 net's six depthwise layers, as the gtest reads them
    shapes = [line.split() for line in (out / "nets" / "dw_shapes.txt").read_text().splitlines()
              if not line.startswith("#")]
    assert shapes == [["96", "24", "24", "3", "2", "1"], ["144", "12", "12", "3", "1", "1"],
                      ["144", "12", "12", "3", "2", "1"], ["192", "6", "6", "3", "1", "1"],
                      ["192", "6", "6", "3", "2", "1"], ["192", "3", "3", "3", "1", "1"]]
    # GPU mode in the GPU solvers; snapshots go where check.py says
    assert "solver_mode: GPU" in (out / "nets" / "solver_gpu.prototxt").read_text()
    assert "@SNAPSHOTS@" in (out / "nets" / "solver_gpu.prototxt").read_text()


def test_every_library_the_kit_loads_is_in_it(kit, tmp_path):
    out, _ = kit
    record = cuda_record()
    gpu_kit.unpack_libraries(out, tmp_path)
    lib = tmp_path / "lib"
    env = dict(os.environ, LD_LIBRARY_PATH=f"{lib}:{Path(record['cuda_dir']) / 'lib'}")
    assert not any("python" in name for name in os.listdir(lib))  # loads into any Python
    for binary in (out / "bin" / "caffe.bin", out / "bin" / "test_conv_dw_layer.testbin", lib / "libcascade_net.so"):
        ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env).stdout
        for line in ldd.splitlines():
            name = line.split()[0]
            if "=>" not in line or any(name.startswith(s) for s in gpu_kit.SYSTEM_LIBS):
                continue
            assert "not found" not in line, line
            assert str(lib) in line, f"{binary.name}: {name} comes from outside the kit: {line.strip()}"


def test_kit_script_runs_its_cpu_side_steps_and_says_no_gpu(kit, tmp_path):
    out, _ = kit
    record = cuda_record()
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "PYTHONPATH")}
    env.update(KIT_CUDA_LIBS=str(Path(record["cuda_dir"]) / "lib"), PYTHON=str(ROOT / ".venv" / "bin" / "python"),
               PATH=f"{tmp_path}:{env['PATH']}")
    # No nvidia-smi on the PATH here; a stub that finds no GPU stands in for a GPU-less machine
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\necho 'No devices were found'\nexit 6\n")
    (tmp_path / "nvidia-smi").chmod(0o755)
    results = tmp_path / "results"
    proc = subprocess.run(["bash", str(out / "run.sh"), "--out", str(results)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no GPU" in proc.stdout
    report = json.loads((results / "gpu_check.json").read_text())
    assert report["gpu"] is False and report["verdict"] == "no GPU; CPU-side steps passed"
    steps = report["steps"]
    assert "[  PASSED  ] 2 tests" in steps["depthwise"]["gtest"]
    for name in ("level1_train_b128_layer", "level1_train_b128_group", "level1_deploy_b1_layer", "level1_deploy_b1_group"):
        totals = steps["time"]["nets"][name]["totals_ms"]
        assert totals["Forward pass"] > 0 and "conv1" in steps["time"]["nets"][name]["layers_ms"]
    train = steps["train"]["runs"]["cpu"]
    assert train["exit"] == 0 and train["iterations"] >= 5 and train["last_loss"] < train["first_loss"]
    cascade = steps["cascade"]
    assert cascade["ok"] and cascade["cascade_ms_median"] > 0 and cascade["weights"].endswith(".caffemodel")
    assert len(cascade["last_points"]) == 5
    assert (results / "gpu_check.txt").read_text().startswith("GPU kit check: no GPU")


def test_cuda_wheels_that_cannot_be_had_give_one_clear_reason(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("cuda_toolkit", ROOT / "caffe_ext" / "cuda_toolkit.py")
    toolkit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toolkit)
    monkeypatch.setattr(toolkit, "WHEELS", tmp_path / "wheels")
    monkeypatch.setattr(toolkit, "TOOLKIT", tmp_path / "cuda")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(toolkit.ToolkitUnavailable, match="pip download failed"):
        toolkit.ensure_toolkit()
    assert not (tmp_path / "cuda").exists()
    # A wheel whose hash differs from the pin is refused and removed
    (tmp_path / "wheels").mkdir(exist_ok=True)
    for name, version, _ in toolkit.PINNED:
        (tmp_path / "wheels" / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(b"not a wheel")
    with pytest.raises(toolkit.ToolkitUnavailable, match="sha256"):
        toolkit.ensure_toolkit()
