"""The GPU kit's check: runs on a bare machine with an NVIDIA GPU (or, for its CPU-side
steps, on any x86-64 Linux) from the kit folder that `make gpu-kit` wrote. run.sh sets the
library path and PYTHONPATH (the kit's copy of this project's pure-Python modules) first.

Steps, each recorded even when another fails:
  device_query   `caffe device_query -gpu 0`
  depthwise      our ConvolutionDepthwise, GPU against CPU (Caffe's gtest), level-1 shapes, batch 1 and 128
  time           `caffe time` of the level-1 train net (batch 128) and deploy net (batch 1), layer vs group
  train          `caffe train -gpu 0` on the kit's HDF5 data (loss must fall), then `-gpu all`
  cascade        both levels at batch 1 from JPEG to points, preprocessing included

Writes OUT/gpu_check.json and OUT/gpu_check.txt. Uses the standard library, numpy and (for
the cascade) OpenCV and Pillow, which the project's preprocessing imports.
"""
import argparse
import ctypes
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent
ARTICLE_GTX1080_MS = 6.0  # the article's cascade time per image on a GTX1080
DW_LINE = re.compile(r"\[ dw-gpu-vs-cpu \] (.*): max relative error (\S+)")


def run(cmd, log_path, timeout, env=None):
    """Runs cmd from the kit folder, output to log_path; (exit code or 'timeout', text, seconds)."""
    start = time.monotonic()
    env = dict(env or os.environ, GLOG_minloglevel="0")  # the steps parse Caffe's INFO lines
    try:
        proc = subprocess.run([str(c) for c in cmd], cwd=KIT, capture_output=True, text=True,
                              timeout=timeout, env=env)
        code, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code = "timeout"
        text = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
    Path(log_path).write_text(text)
    return code, text, round(time.monotonic() - start, 2)


def caffe(*args):
    return [KIT / "bin" / "caffe.bin", *args]


def step_device_query(out, gpu):
    code, text, seconds = run(caffe("device_query", "-gpu", "0"), out / "device_query.log", 60)
    lines = [re.sub(r"^.*\] ", "", l) for l in text.splitlines() if "common.cpp" in l or "caffe.cpp" in l]
    return {"ok": code == 0 and gpu, "exit": code, "seconds": seconds, "output": lines[-25:]}


def step_depthwise(out, gpu):
    env = dict(os.environ, CAFFE_EXT_DW_SHAPES=str(KIT / "nets" / "dw_shapes.txt"))
    cmd = [KIT / "bin" / "test_conv_dw_layer.testbin"]
    if not gpu:  # typed cases 0 and 1 are the CPU float/double ones; the GPU comparison needs a GPU
        cmd.append("--gtest_filter=ConvolutionDepthwiseTest/0.*:ConvolutionDepthwiseTest/1.*")
    code, text, seconds = run(cmd, out / "depthwise_test.log", 300, env)
    checks = [{"case": m.group(1), "max_relative_error": float(m.group(2))} for m in DW_LINE.finditer(text)]
    passed = re.search(r"\[  PASSED  \] \d+ tests?\.", text)
    failed = re.search(r"\[  FAILED  \] \d+ tests?, listed below", text)
    worst = max((c["max_relative_error"] for c in checks), default=None)
    ok = code == 0 and passed is not None and failed is None and (not gpu or (checks and worst < 1e-4))
    return {"ok": bool(ok), "exit": code, "seconds": seconds, "gpu_vs_cpu": checks,
            "worst_gpu_vs_cpu": worst, "tolerance": 1e-4,
            "gtest": (passed.group(0) if passed else "") + (" " + failed.group(0) if failed else "")}


def step_time(out, gpu, iterations):
    from landmarks.train.caffe_log import parse_time

    device = ["-gpu", "0"] if gpu else []
    results = {}
    for net in ("train_b128", "deploy_b1"):
        for dw in ("layer", "group"):
            name = f"level1_{net}_{dw}"
            code, text, seconds = run(caffe("time", f"-model=nets/{name}.prototxt", f"-iterations={iterations}",
                                            *device), out / f"time_{name}.log", 240)
            layers, totals = parse_time(text)
            results[name] = {"exit": code, "seconds": seconds, "totals_ms": totals, "layers_ms": layers}
    ok = all(r["exit"] == 0 and r["totals_ms"] for r in results.values())
    return {"ok": ok, "iterations": iterations, "device": "GPU 0" if gpu else "CPU", "nets": results}


def step_train(out, gpu):
    from landmarks.train.caffe_log import parse_log

    runs = {}
    for label, solver, device in (("gpu0", "solver_gpu.prototxt", ["-gpu", "0"]),
                                  ("gpu_all", "solver_gpu_all.prototxt", ["-gpu", "all"])):
        if not gpu:
            label, solver, device = "cpu", "solver_cpu.prototxt", []
        snapshots = out / "snapshots"
        snapshots.mkdir(exist_ok=True)
        solver_path = out / solver  # the kit's solver with this output folder for its snapshots
        solver_path.write_text((KIT / "nets" / solver).read_text().replace("@SNAPSHOTS@", str(snapshots.resolve())))
        code, text, seconds = run(caffe("train", f"-solver={solver_path.resolve()}", *device),
                                  out / f"train_{label}.log", 300)
        losses = [(row["NumIters"], row["loss"]) for row in parse_log(text.splitlines()).train if "loss" in row]
        first, last = (losses[0][1], losses[-1][1]) if losses else (None, None)
        runs[label] = {"exit": code, "seconds": seconds, "iterations": losses[-1][0] if losses else 0,
                       "first_loss": first, "last_loss": last, "losses": losses,
                       "loss_fell": bool(losses and last < first)}
        if not gpu:
            break
    ok = all(r["exit"] == 0 and r["loss_fell"] for r in runs.values())
    return {"ok": ok, "runs": runs}


class ShimNet:
    """One deploy net through libcascade_net.so: the interface landmarks.runtime.inference.Cascade uses."""

    def __init__(self, lib, deploy, weights, device):
        self.lib = lib
        self.handle = lib.cn_open(str(deploy).encode(), str(weights or "").encode(), b"fc2", device)
        self.size = lib.cn_input_size(self.handle)

    def forward(self, batch):
        import numpy as np

        from landmarks.conventions.labels import as_points

        batch = np.ascontiguousarray(batch, dtype=np.float32)
        out = np.empty(batch.shape[0] * 64, dtype=np.float32)
        count = self.lib.cn_forward(self.handle, batch.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                    batch.shape[0], out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), out.size)
        if count < 0:
            raise RuntimeError("cascade_net: output larger than the buffer")
        return as_points(out[:count].reshape(batch.shape[0], -1).copy())


def load_shim():
    os.environ["GLOG_minloglevel"] = "2"  # glog reads it when the library loads: keep INFO quiet
    lib = ctypes.CDLL(str(KIT / "lib" / "libcascade_net.so"))
    lib.cn_open.restype = ctypes.c_void_p
    lib.cn_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    lib.cn_input_size.argtypes = [ctypes.c_void_p]
    lib.cn_forward.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int,
                               ctypes.POINTER(ctypes.c_float), ctypes.c_int]
    return lib


def step_cascade(out, gpu, repeats, weights):
    from landmarks.runtime.inference import Cascade

    lib = load_shim()
    device = 0 if gpu else -1
    # Both levels load level 1's trained weights (the same layers): the timing needs real
    # BatchNorm statistics, not a level-2 model.
    level1 = ShimNet(lib, KIT / "nets" / "level1_deploy_b1_layer.prototxt", weights, device)
    level2 = ShimNet(lib, KIT / "nets" / "level2_deploy_b1_layer.prototxt", weights, device)
    cascade = Cascade(level1, level2)
    images = sorted(str(p) for p in (KIT / "images").glob("*.jpg"))
    for path in images[:5]:  # warm-up: allocations, cuBLAS handles, the first kernels
        cascade.run(path)
    times, nets_only = [], []
    for i in range(repeats):
        path = images[i % len(images)]
        start = time.perf_counter()
        result = cascade.run(path)
        times.append((time.perf_counter() - start) * 1000)
    from landmarks.conventions.images import read_level1

    batch = read_level1(images[0], level1.size)[0][None]
    for _ in range(repeats):
        start = time.perf_counter()
        level1.forward(batch)
        level2.forward(batch)
        nets_only.append((time.perf_counter() - start) * 1000)
    return {"ok": True, "device": "GPU 0" if gpu else "CPU", "images": len(images), "repeats": repeats,
            "weights": str(weights) if weights else "untrained (fillers)",
            "cascade_ms_median": round(statistics.median(times), 3),
            "cascade_ms_p90": round(sorted(times)[int(0.9 * len(times))], 3),
            "two_forwards_ms_median": round(statistics.median(nets_only), 3),
            "article_gtx1080_ms": ARTICLE_GTX1080_MS,
            "last_points": [[round(float(v), 1) for v in p] for p in result.level2]}


def newest_weights(out):
    """The most trained snapshot (the -gpu 0 run's, which trains longest)."""
    found = sorted((out / "snapshots").glob("*_iter_*.caffemodel"),
                   key=lambda p: int(p.stem.rsplit("_", 1)[-1]))
    return found[-1] if found else None


def report_text(result):
    lines = [f"GPU kit check: {result['verdict']}   ({result['machine']})"]
    if not result["gpu"]:
        lines.append("no GPU: nvidia-smi finds none; ran the CPU-side steps only")
    dq = result["steps"].get("device_query", {})
    lines += ["", "device_query:"] + [f"  {l}" for l in dq.get("output", [])[-12:]]
    dw = result["steps"].get("depthwise", {})
    if dw and result["gpu"]:
        lines += ["", f"depthwise GPU vs CPU: {dw.get('gtest', '')}; worst max relative error "
                      f"{dw.get('worst_gpu_vs_cpu')} (tolerance 1e-4) over {len(dw.get('gpu_vs_cpu', []))} checks"]
    elif dw:
        lines += ["", f"depthwise against grouped Convolution on the CPU: {dw.get('gtest', '')} "
                      "(the GPU comparison needs a GPU)"]
    tm = result["steps"].get("time", {})
    if tm.get("nets"):
        lines += ["", f"caffe time ({tm['device']}, {tm['iterations']} iterations), ms:"]
        for name, r in tm["nets"].items():
            t = r["totals_ms"]
            lines.append(f"  {name:28s} forward {t.get('Forward pass', float('nan')):8.3f}  backward "
                         f"{t.get('Backward pass', float('nan')):8.3f}  fwd+bwd {t.get('Forward-Backward', float('nan')):8.3f}")
    tr = result["steps"].get("train", {})
    for label, r in tr.get("runs", {}).items():
        lines.append(f"  train {label}: {r['iterations']} iterations in {r['seconds']} s, loss {r['first_loss']} -> "
                     f"{r['last_loss']} ({'fell' if r['loss_fell'] else 'DID NOT FALL'})")
    cc = result["steps"].get("cascade", {})
    if cc.get("ok"):
        lines += ["", f"cascade, batch 1, JPEG to points ({cc['device']}): median {cc['cascade_ms_median']} ms, "
                      f"p90 {cc['cascade_ms_p90']} ms (two forwards alone {cc['two_forwards_ms_median']} ms); "
                      f"the article: {cc['article_gtx1080_ms']} ms on a GTX1080"]
    for name, step in result["steps"].items():
        if not step.get("ok") and (result["gpu"] or name != "device_query"):
            lines.append(f"step {name}: FAILED {step.get('error', '')} (see its log in the output folder)")
    return "\n".join(lines) + "\n"


def has_gpu():
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(line.startswith("GPU ") for line in out.splitlines())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(KIT / "results"), help="output folder (default: KIT/results)")
    parser.add_argument("--cpu", action="store_true", help="CPU-side steps only, even with a GPU")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    gpu = has_gpu() and not args.cpu
    steps = {}
    plan = [("device_query", lambda: step_device_query(out, gpu)),
            ("depthwise", lambda: step_depthwise(out, gpu)),
            ("time", lambda: step_time(out, gpu, 50 if gpu else 2)),
            ("train", lambda: step_train(out, gpu)),
            ("cascade", lambda: step_cascade(out, gpu, 200 if gpu else 10, newest_weights(out)))]
    for name, call in plan:
        start = time.monotonic()
        print(f"[gpu-kit] {name} ...", flush=True)
        try:
            steps[name] = call()
        except Exception as exc:  # a broken step must not lose the others' results
            steps[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        steps[name].setdefault("seconds", round(time.monotonic() - start, 2))
        print(f"[gpu-kit] {name}: {'ok' if steps[name]['ok'] or name == 'device_query' else 'FAILED'} "
              f"({steps[name]['seconds']} s)", flush=True)
    needed = [s for n, s in steps.items() if n != "device_query" or gpu]
    verdict = ("all steps passed" if all(s["ok"] for s in needed) else "FAILED") if gpu else \
        ("no GPU; CPU-side steps passed" if all(s["ok"] for s in needed) else "no GPU; CPU-side steps FAILED")
    result = {"verdict": verdict, "gpu": gpu, "machine": f"{platform.node()} {platform.machine()} "
              f"python {platform.python_version()}", "steps": steps}
    tmp = out / "gpu_check.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out / "gpu_check.json")
    text = report_text(result)
    (out / "gpu_check.txt").write_text(text)
    print(text, end="")
    return 0 if all(s["ok"] for s in needed) else 1


if __name__ == "__main__":
    sys.exit(main())
