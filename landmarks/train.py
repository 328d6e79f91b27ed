"""Owns running the real `caffe train`: the command line, the full log, a condensed live view,
Ctrl-C (Caffe stops and snapshots), resuming from the newest .solverstate, and stopping on a
non-finite loss. What happened is recorded in `train.json` beside the log, including the
final weights' path, so nothing has to be found later by reading the log.
"""
import math
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from caffe.proto import caffe_pb2

from landmarks import caffe_runtime
from landmarks.atomic import write_json
from landmarks.caffe_log import LogFollower
from landmarks.protoio import read_prototxt


class TrainingError(RuntimeError):
    pass


class TrainingDiverged(TrainingError):
    pass


def _snapshot_iteration(path):
    match = re.search(r"_iter_(\d+)\.(caffemodel|solverstate)$", path.name)
    return int(match.group(1)) if match else -1


def newest_snapshot(snapshot_prefix, kind="solverstate"):
    """The newest `<prefix>_iter_N.<kind>` by N, or None."""
    prefix = Path(snapshot_prefix)
    candidates = list(prefix.parent.glob(f"{prefix.name}_iter_*.{kind}"))
    return max(candidates, key=_snapshot_iteration) if candidates else None


def gpu_args(gpu):
    """`caffe train` arguments for a GPU choice: None or "" (CPU), "0", "0,1" or "all"."""
    if not gpu:
        return []
    if gpu != "all" and not re.fullmatch(r"\d+(,\d+)*", gpu):
        raise TrainingError(f"GPU must be a device id, a comma-separated list or 'all', got {gpu!r}")
    available = caffe_runtime.gpu_count()
    if available == 0:
        raise TrainingError(f"GPU={gpu} asked for, but this Caffe build or machine has no GPU "
                            f"(build: {caffe_runtime.build_info()['mode']}); leave GPU empty for CPU")
    if gpu != "all" and max(int(g) for g in gpu.split(",")) >= available:
        raise TrainingError(f"GPU={gpu}: this machine shows {available} GPU(s)")
    return ["-gpu", gpu]


def _format_eta(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class _LiveView:
    """Condenses Caffe's log to one line per display step and one per test."""

    def __init__(self, max_iter, echo):
        self.max_iter, self.echo = max_iter, echo
        self.start = time.time()
        self.first_iter = None
        self.lr = None

    def train(self, iteration, loss):
        if self.first_iter is None:
            self.first_iter, self.start = iteration, time.time()
        done = iteration - self.first_iter
        rate = done / max(time.time() - self.start, 1e-9)
        eta = _format_eta((self.max_iter - iteration) / rate) if done > 0 else "?"
        lr = f"  lr {self.lr:g}" if self.lr is not None else ""
        self.echo(f"  iter {iteration:>7}/{self.max_iter}  loss {loss:<10.5g}{lr}  {rate:5.1f} it/s  ETA {eta}")

    def test(self, iteration, name, value):
        self.echo(f"  test @ {iteration:>7}: {name} = {value:.5g}")


def train(solver_path, run_dir, resume=False, gpu=None, weights=None, echo=print):
    """Runs `caffe train` for `solver_path`, logging into run_dir/train.log.

    resume: continue from the newest .solverstate of the solver's snapshot prefix.
    gpu: None/"" for CPU, or "0", "0,1", "all". weights: initial .caffemodel (fine-tuning).
    Returns the record written to run_dir/train.json. Raises TrainingDiverged on nan/inf.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    solver = read_prototxt(solver_path, caffe_pb2.SolverParameter())
    command = [caffe_runtime.caffe_binary(), "train", f"-solver={Path(solver_path).resolve()}",
               "-sigint_effect", "stop", "-sighup_effect", "snapshot", *gpu_args(gpu)]
    state = newest_snapshot(solver.snapshot_prefix) if resume else None
    if resume and state is None:
        echo(f"RESUME asked for, but no {solver.snapshot_prefix}_iter_*.solverstate exists: starting afresh")
    if state is not None:
        command.append(f"-snapshot={state}")
    elif weights:
        command.append(f"-weights={weights}")
    mode = "GPU " + gpu if gpu else "CPU"
    log_path = run_dir / "train.log"
    record = {"solver": str(Path(solver_path).resolve()), "command": command, "mode": mode,
              "caffe_build": caffe_runtime.build_info(), "resumed_from": str(state) if state else None,
              "log": str(log_path), "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": "running"}
    _write_record(run_dir, record)
    echo(f"caffe train on {mode}{' (no GPU requested or available)' if not gpu else ''}: log {log_path}")
    if state is not None:
        echo(f"resuming from {state}")
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0")
    view = _LiveView(solver.max_iter, echo)
    last_iter, diverged, interrupted = None, None, False
    started = time.time()
    with open(log_path, "a" if state is not None else "w") as log:
        log.write(f"# {' '.join(command)}\n")
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, bufsize=1)
        follower = LogFollower()
        try:
            for line in proc.stdout:
                log.write(line)
                event = follower.feed(line)
                if event is None:
                    continue
                kind = event["kind"]
                if kind == "lr":
                    view.lr = event["value"]
                elif kind == "train":
                    last_iter = event["iteration"]
                    if not math.isfinite(event["loss"]):
                        diverged = (event["iteration"], event["loss"])
                        proc.terminate()
                        break
                    view.train(event["iteration"], event["loss"])
                elif kind == "test_output" and event.get("weighted") is not None:
                    view.test(event["iteration"], event["name"], event["weighted"])
        except KeyboardInterrupt:
            interrupted = True
            echo("Ctrl-C: asking Caffe to stop and snapshot...")
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            for line in proc.stdout:
                log.write(line)
        returncode = proc.wait()
    record.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S"), seconds=round(time.time() - started, 1),
                  returncode=returncode, last_iteration=last_iter)
    final = newest_snapshot(solver.snapshot_prefix, "caffemodel")
    record["final_weights"] = str(final) if final else None
    if diverged:
        record["status"] = "diverged"
        _write_record(run_dir, record)
        raise TrainingDiverged(f"training loss became {diverged[1]} at iteration {diverged[0]}; "
                               f"stopped. Lower the learning rate or check the data. Log: {log_path}")
    if interrupted:
        record["status"] = "interrupted"
        _write_record(run_dir, record)
        raise KeyboardInterrupt(f"stopped at iteration {last_iter}; snapshot {final}. Resume with RESUME=1.")
    if returncode != 0:
        record["status"] = "failed"
        _write_record(run_dir, record)
        tail = "".join(open(log_path).readlines()[-15:])
        raise TrainingError(f"caffe train exited with {returncode}; last lines of {log_path}:\n{tail}")
    record["status"] = "done"
    _write_record(run_dir, record)
    echo(f"done in {_format_eta(record['seconds'])}: {final}")
    return record


def _write_record(run_dir, record):
    write_json(run_dir / "train.json", record)
