"""Owns the CPU training benchmark: stock Caffe against ours, measured side by side in one run.

- stock: the level-1 train net with `Convolution` + `group` for the depthwise layers and
  Caffe's own BatchNorm, Scale and ReLU (registered in our build as StockBatchNorm,
  StockScale, StockReLU: the untouched stock code);
- ours: the same net as the project generates it (`ConvolutionDepthwise`, and the stock type
  names, which our build gives to its faster CPU layers).

Both train at batch 128 on the same HDF5 file of random, non-zero data (zeros would flatter
BatchNorm and ReLU), with the article's Adam solver, one `solver.step(1)` per sample, the two
sides interleaved so that load on this noisy machine hits both alike. Per layer type times
come from running the nets layer by layer (`_forward`/`_backward`). The depthwise targets
time one layer alone, our `ConvolutionDepthwise` against the grouped `Convolution`, at every
depthwise shape of the level-1 net, batch 1 and 128, with `caffe time`'s per-layer C++ timers
(through pycaffe, the per-call overhead is a large part of a batch-1 layer's few microseconds),
the median of a few runs a side, alternating.
"""
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

TARGET_TRAIN_SPEEDUP = 4.0
TARGET_DEPTHWISE_SPEEDUP = 3.0
BATCH = 128
DW_ROUNDS = 3  # caffe time runs per depthwise shape and side
STOCK_TYPES = {"BatchNorm": "StockBatchNorm", "Scale": "StockScale", "ReLU": "StockReLU"}


def _caffe():
    import caffe

    caffe.set_mode_cpu()
    return caffe


def stock_net(cfg_net):
    """A NetParameter with the stock types for the layers our build speeds up."""
    for layer in cfg_net.layer:
        layer.type = STOCK_TYPES.get(layer.type, layer.type)
    return cfg_net


def write_data(folder, samples=512, size=48, seed=0):
    """An HDF5 training file of random images (BGR minus 127.5) and labels in [-1, 1]."""
    import h5py

    rng = np.random.default_rng(seed)
    path = Path(folder) / "train.h5"
    with h5py.File(path, "w") as f:
        f["data"] = rng.uniform(-127.5, 127.5, (samples, 3, size, size)).astype(np.float32)
        f["label"] = rng.uniform(-1, 1, (samples, 10)).astype(np.float32)
    (Path(folder) / "train.txt").write_text(f"{path}\n")
    return str(Path(folder) / "train.txt")


def make_solver(folder, side, data_list):
    """caffe.Solver for one side ("stock" or "ours"), CPU, batch 128, the article's Adam."""
    caffe = _caffe()
    from landmarks.common.protoio import write_prototxt
    from landmarks.nets import mobilenet as nets
    from landmarks.nets import solvers

    cfg = nets.NetConfig(depthwise="group" if side == "stock" else "layer")
    net = nets.train_test_net(cfg, "hdf5", (data_list,), (data_list,), BATCH, BATCH, f"level1_{side}")
    if side == "stock":
        net = stock_net(net)
    net_path = Path(folder) / f"{side}_train.prototxt"
    write_prototxt(net, net_path)
    schedule = replace(solvers.get_schedule("article"), display=0, snapshot=0, test_interval=10 ** 8,
                       random_seed=1)
    solver = solvers.solver(schedule, 1, net_path, Path(folder) / side, mode="CPU", test_iter=1)
    solver_path = Path(folder) / f"{side}_solver.prototxt"
    write_prototxt(solver, solver_path)
    return caffe.get_solver(str(solver_path))


def time_steps(solvers, repeats, warmup=2):
    """Median milliseconds of one solver.step(1) per side, the sides interleaved."""
    for solver in solvers.values():
        solver.step(warmup)
    samples = {side: [] for side in solvers}
    for _ in range(repeats):
        for side, solver in solvers.items():
            start = time.perf_counter()
            solver.step(1)
            samples[side].append((time.perf_counter() - start) * 1000)
    return {side: statistics.median(values) for side, values in samples.items()}


def layer_type_times(net, repeats=3):
    """{layer type: median ms of forward + backward} over the net's layers, one at a time."""
    layers = list(net.layers)
    totals = []
    for _ in range(repeats):
        per_layer = [0.0] * len(layers)
        for i in range(len(layers)):
            start = time.perf_counter()
            net._forward(i, i)
            per_layer[i] += time.perf_counter() - start
        for i in reversed(range(len(layers))):
            start = time.perf_counter()
            net._backward(i, i)
            per_layer[i] += time.perf_counter() - start
        totals.append(per_layer)
    by_type = {}
    for i, layer in enumerate(layers):
        kind = layer.type
        by_type[kind] = by_type.get(kind, 0.0) + statistics.median(t[i] for t in totals) * 1000
    return dict(sorted(by_type.items(), key=lambda kv: -kv[1]))


def _single_layer_prototxt(folder, kind, shape, kernel, stride, pad):
    """DummyData (gaussian, refilled every pass: real non-zero data) -> one depthwise layer,
    ours or the grouped Convolution; force_backward so that `caffe time` runs its backward."""
    caffe = _caffe()
    from caffe import layers as L

    from landmarks.common.protoio import write_prototxt

    n = caffe.NetSpec()
    n.data = L.DummyData(dummy_data_param=dict(shape=[dict(dim=list(shape))],
                                               data_filler=[dict(type="gaussian", std=1)]))
    conv = dict(num_output=shape[1], kernel_size=kernel, stride=stride, pad=pad, bias_term=False,
                weight_filler=dict(type="msra"))
    if kind == "group":
        n.out = L.Convolution(n.data, convolution_param=dict(conv, group=shape[1]))
    else:
        n.out = L.ConvolutionDepthwise(n.data, convolution_param=conv)
    proto = n.to_proto()
    proto.force_backward = True
    path = Path(folder) / f"dw_{kind}_{'x'.join(map(str, shape))}_s{stride}.prototxt"
    write_prototxt(proto, path)
    return path


def time_depthwise(folder, shape, kernel, stride, pad, iterations, rounds=DW_ROUNDS):
    """{"group"|"layer": {"forward": ms, "backward": ms}} for one depthwise shape, from
    `caffe time`'s per-layer timers (C++: no Python call overhead in what is timed): `rounds`
    runs a side, the two sides alternating so that a burst of load hits both, and the median
    of each side's runs (a batch-1 layer takes microseconds: one run's mean is noisy)."""
    import subprocess

    from landmarks.common.caffe_runtime import caffe_binary
    from landmarks.train.caffe_log import parse_time

    runs = {"group": [], "layer": []}
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    models = {kind: _single_layer_prototxt(folder, kind, shape, kernel, stride, pad) for kind in runs}
    for _ in range(rounds):
        for kind, model in models.items():
            proc = subprocess.run([caffe_binary(), "time", f"-model={model}", f"-iterations={iterations}"],
                                  capture_output=True, text=True, env=env)
            layers, _ = parse_time(proc.stdout + proc.stderr)
            if proc.returncode != 0 or "out" not in layers:
                raise RuntimeError(f"caffe time on {model} failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
            runs[kind].append(layers["out"])
    return {kind: {d: statistics.median(r[d] for r in times) for d in ("forward", "backward")}
            for kind, times in runs.items()}


def depthwise_shapes():
    """(C, H, W, kernel, stride, pad) of each depthwise layer of the level-1 deploy net."""
    from landmarks.nets import mobilenet as nets

    return nets.depthwise_shapes(nets.NetConfig())


def machine():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model or platform.processor(), "cores": cores, "load_average": os.getloadavg(),
            "omp_threads": int(os.environ.get("OMP_NUM_THREADS", cores)),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "openblas_threads": int(os.environ.get("OPENBLAS_NUM_THREADS", cores))}


def run(repeats=7, dw_iterations=100, progress=print):
    """The whole benchmark; returns the result dict (the JSON's content)."""
    result = {"machine": machine(), "batch": BATCH}
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        data = write_data(folder)
        progress("training step: building both solvers")
        solvers_ = {side: make_solver(folder, side, data) for side in ("stock", "ours")}
        progress(f"training step: {repeats} interleaved steps per side after 2 warm-up steps")
        steps = time_steps(solvers_, repeats)
        result["train_ms"] = steps
        result["train_speedup"] = steps["stock"] / steps["ours"]
        progress("per layer type times")
        result["layer_type_ms"] = {side: layer_type_times(s.net) for side, s in solvers_.items()}
        del solvers_
        rows = []
        for c, h, w, kernel, stride, pad in depthwise_shapes():
            for batch in (1, BATCH):
                progress(f"depthwise {c}x{h}x{w} stride {stride}, batch {batch}")
                t = time_depthwise(folder, (batch, c, h, w), kernel, stride, pad,
                                   dw_iterations if batch == 1 else max(10, dw_iterations // 10))
                rows.append({"shape": [batch, c, h, w], "stride": stride, "group_ms": t["group"], "ours_ms": t["layer"],
                             "forward_speedup": t["group"]["forward"] / t["layer"]["forward"],
                             "backward_speedup": t["group"]["backward"] / t["layer"]["backward"]})
        result["depthwise"] = rows
    result["depthwise_forward_speedup"] = min(r["forward_speedup"] for r in rows)
    result["depthwise_backward_speedup"] = min(r["backward_speedup"] for r in rows)
    result["targets"] = {
        "train": {"target": TARGET_TRAIN_SPEEDUP, "met": result["train_speedup"] >= TARGET_TRAIN_SPEEDUP},
        "depthwise_forward": {"target": TARGET_DEPTHWISE_SPEEDUP,
                              "met": result["depthwise_forward_speedup"] >= TARGET_DEPTHWISE_SPEEDUP},
        "depthwise_backward": {"target": TARGET_DEPTHWISE_SPEEDUP,
                               "met": result["depthwise_backward_speedup"] >= TARGET_DEPTHWISE_SPEEDUP}}
    return result


def format_report(result):
    m = result["machine"]
    met = lambda key: "met" if result["targets"][key]["met"] else "NOT met"  # noqa: E731
    lines = [f"{m['cpu']}, {m['cores']} cores; OpenMP threads {m['omp_threads']} (wait policy "
             f"{m['omp_wait_policy']}), OpenBLAS threads {m['openblas_threads']}; load average before "
             f"{m['load_average'][0]:.2f}",
             f"training step, level-1 train net, batch {result['batch']}, CPU (forward + backward + Adam), median:",
             f"  stock Caffe (Convolution group, stock BatchNorm/Scale/ReLU) {result['train_ms']['stock']:9.1f} ms",
             f"  ours                                                         {result['train_ms']['ours']:9.1f} ms",
             f"  speedup {result['train_speedup']:.2f}x (target {TARGET_TRAIN_SPEEDUP:g}x: {met('train')})",
             "per layer type, forward + backward, ms (stock | ours):"]
    stock, ours = result["layer_type_ms"]["stock"], result["layer_type_ms"]["ours"]
    for kind in sorted(set(stock) | set(ours), key=lambda k: -stock.get(k, ours.get(k, 0))):
        lines.append(f"  {kind:22s} {stock.get(kind, 0):9.1f} | {ours.get(kind, 0):9.1f}")
    lines.append(f"depthwise layer alone (caffe time, median of {DW_ROUNDS} alternating runs a side), ms "
                 "(grouped Convolution | ours), forward and backward:")
    for r in result["depthwise"]:
        b, c, h, w = r["shape"]
        lines.append(f"  batch {b:3d} {c:3d}x{h:2d}x{w:2d} s{r['stride']}   fwd {r['group_ms']['forward']:8.3f} | "
                     f"{r['ours_ms']['forward']:7.3f} ({r['forward_speedup']:5.1f}x)   bwd {r['group_ms']['backward']:8.3f}"
                     f" | {r['ours_ms']['backward']:7.3f} ({r['backward_speedup']:5.1f}x)")
    lines.append(f"  worst: forward {result['depthwise_forward_speedup']:.1f}x ({met('depthwise_forward')}), "
                 f"backward {result['depthwise_backward_speedup']:.1f}x ({met('depthwise_backward')}); "
                 f"target {TARGET_DEPTHWISE_SPEEDUP:g}x each")
    return "\n".join(lines)
