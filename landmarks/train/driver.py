"""Owns running the real `caffe train`: the command line, the full log, a condensed live view,
Ctrl-C (Caffe stops and snapshots), Caffe dying with the driver (a SIGKILL of the driver
never leaves it training on), resuming from the newest .solverstate, and stopping on a
non-finite loss. What happened is recorded in `train.json` beside the log, including the
final weights' path, so nothing has to be found later by reading the log.

The final weights are the last whole .caffemodel that THIS run wrote (Caffe logs each file it
writes; leftovers of earlier runs in snapshots/ are never picked), and `train.json` lists the
snapshots checked whole (`landmarks.train.snapshots`) as they land: RESUME picks the newest of those.
"""
import ctypes
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from caffe.proto import caffe_pb2

from landmarks.common import caffe_runtime, checks
from landmarks.common.atomic import write_json
from landmarks.common.protoio import read_prototxt
from landmarks.train import snapshots
from landmarks.train.caffe_log import LogFollower


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


def _read_record(run_dir):
    import json

    try:
        return json.loads((Path(run_dir) / "train.json").read_text())
    except (OSError, ValueError):
        return None


def resume_point(snapshot_prefix, run_dir, echo=print):
    """The newest whole .solverstate to resume from, or None: among the snapshots that
    run_dir/train.json records as checked, and when that run never finished its record, the
    files written since it started (a record without that list, from before it was kept:
    every `<prefix>_iter_*.solverstate`). Each one passed over is named with its reason."""
    record = _read_record(run_dir)
    prefix = Path(snapshot_prefix)
    on_disk = list(prefix.parent.glob(f"{prefix.name}_iter_*.solverstate"))
    if record is None or "snapshots" not in record:
        candidates = on_disk
    else:
        candidates = [s["solverstate"] for s in record["snapshots"] if s.get("solverstate")]
        if record.get("status") == "running":
            # the driver was killed, or could not write its record (a full disk): the files that
            # run wrote after its last record count too (each is checked whole all the same)
            started = time.mktime(time.strptime(record["started"], "%Y-%m-%dT%H:%M:%S"))
            candidates += [p for p in on_disk if p.stat().st_mtime >= started - 1]
    return snapshots.newest_whole_solverstate(candidates, echo)


class _Snapshots:
    """The snapshots one `caffe train` writes, checked once each file is complete (Caffe
    writes one file at a time and logs before each, so a file is complete when the next
    line is announced or when Caffe has exited)."""

    def __init__(self, earlier=()):
        self.whole = [dict(s) for s in earlier if all(Path(p).exists() for k, p in s.items() if k != "iteration")]
        self.bad, self.pending, self.own = [], [], []

    def announced(self, path):
        self.settle()
        self.pending.append(path)

    def settle(self):
        for path in self.pending:
            try:
                if path.endswith(".solverstate"):
                    snapshots.check_solverstate(path)
                else:
                    snapshots.check_weights(path)
            except snapshots.SnapshotError as exc:
                self.bad.append(str(exc))
                continue
            n = snapshots.iteration(path)
            entry = next((s for s in self.whole if s["iteration"] == n), None)
            if entry is None:
                entry = {"iteration": n}
                self.whole = [s for s in self.whole if s["iteration"] < n] + [entry]
            entry["solverstate" if path.endswith(".solverstate") else "caffemodel"] = path
            if path.endswith(".caffemodel"):
                self.own.append(path)
        self.pending = []

    def record(self):
        return {"snapshots": self.whole, "bad_snapshots": self.bad}


# glog's error and fatal lines first; a library's own "Error" lines (HDF5-DIAG, ...) only when
# there is none, since they come before the line that says which file.
_FIRST_ERROR = re.compile(r"^[EF]\d{4,8} |Check failed|Failed to open|Cannot open")
_SOME_ERROR = re.compile(r"Error|error:|ERROR")


def gpu_args(gpu):
    """`caffe train` arguments for a GPU choice: None or "" (CPU), "0", "0,1" or "all"
    (checked by landmarks.common.checks.gpu_problem, as the workflow checks it before any work)."""
    problem = checks.gpu_problem(gpu)
    if problem:
        raise TrainingError(problem)
    return ["-gpu", gpu] if gpu else []


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _parent_death_signal():
    """A function for Popen's preexec_fn that has the kernel SIGKILL the child when the driver
    dies, however it dies (SIGKILL included, where no handler of ours runs); None off Linux.
    prctl is looked up here, in the parent, so the child only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def die_with_parent():
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the driver died before the call: nobody would send the signal
            os._exit(1)

    return die_with_parent


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
    earlier = _read_record(run_dir) or {}
    state = resume_point(solver.snapshot_prefix, run_dir, echo) if resume else None
    if resume and state is None:
        echo(f"RESUME asked for, but no whole {solver.snapshot_prefix}_iter_*.solverstate of this run folder: "
             "starting afresh")
    taken = _Snapshots(earlier.get("snapshots", []) if state is not None else ())
    if state is None:
        leftovers = newest_snapshot(solver.snapshot_prefix, "caffemodel")
        if leftovers is not None:
            echo(f"note: snapshots of an earlier run are in {leftovers.parent}; they are not this run's "
                 "and will not be used")
    if state is not None:
        command.append(f"-snapshot={state}")
    elif weights:
        command.append(f"-weights={weights}")
    mode = "GPU " + gpu if gpu else "CPU"
    log_path = run_dir / "train.log"
    record = {"solver": str(Path(solver_path).resolve()), "command": command, "mode": mode,
              "caffe_build": caffe_runtime.build_info(), "resumed_from": str(state) if state else None,
              "log": str(log_path), "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": "running",
              **taken.record()}
    _write_record(run_dir, record)
    echo(f"caffe train on {mode}{' (no GPU requested or available)' if not gpu else ''}: log {log_path}")
    if state is not None:
        echo(f"resuming from {state}")
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0")
    view = _LiveView(solver.max_iter, echo)
    last_iter, diverged, interrupted, first_error, some_error = None, None, False, None, None
    started = time.time()
    with open(log_path, "a" if state is not None else "w") as log:
        log.write(f"# {' '.join(command)}\n")
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, bufsize=1, preexec_fn=_parent_death_signal())
        follower = LogFollower()
        try:
            for line in proc.stdout:
                log.write(line)
                if first_error is None and _FIRST_ERROR.search(line):
                    first_error = line.strip()
                if some_error is None and _SOME_ERROR.search(line):
                    some_error = line.strip()
                written = snapshots.written_by(line)
                if written:
                    taken.announced(written)
                    _write_record(run_dir, dict(record, **taken.record()))
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
                if snapshots.written_by(line):
                    taken.announced(snapshots.written_by(line))
        except BaseException:  # e.g. the log cannot be written (a full disk): never leave Caffe running
            proc.kill()
            proc.wait()
            raise
        returncode = proc.wait()
    taken.settle()
    record.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S"), seconds=round(time.time() - started, 1),
                  returncode=returncode, last_iteration=last_iter)
    record.update(taken.record())
    final = taken.own[-1] if taken.own else None
    if final is None and state is not None:  # nothing new written (e.g. max_iter already reached)
        final = str(snapshots.check_solverstate(state))
    record["final_weights"] = final
    if taken.bad:
        echo("not used: " + "; ".join(taken.bad))
    if diverged:
        record["status"] = "diverged"
        _write_record(run_dir, record)
        raise TrainingDiverged(f"training loss became {diverged[1]} at iteration {diverged[0]}; "
                               f"stopped. Lower the learning rate or check the data. Log: {log_path}")
    if interrupted:
        record["status"] = "interrupted"
        _write_record(run_dir, record)
        stopped_at = max(last_iter or 0, snapshots.iteration(final) if final else 0)
        raise KeyboardInterrupt(f"stopped at iteration {stopped_at}; snapshot {final}. Resume with RESUME=1.")
    if returncode != 0:
        record["status"] = "failed"
        _write_record(run_dir, record)
        tail = "".join(open(log_path, errors="replace").readlines()[-15:])
        first_error = first_error or some_error
        first = f"\nfirst error: {first_error}" if first_error else ""
        raise TrainingError(f"caffe train exited with {returncode}{first}\nlast lines of {log_path}:\n{tail}"
                            f"(first error again: {first_error or 'none found'})")
    if final is None:
        record["status"] = "failed"
        _write_record(run_dir, record)
        raise TrainingError(f"caffe train finished but wrote no whole .caffemodel; see {log_path}")
    record["status"] = "done"
    _write_record(run_dir, record)
    echo(f"done in {_format_eta(record['seconds'])}: {final}")
    return record


def _write_record(run_dir, record):
    write_json(run_dir / "train.json", record)
