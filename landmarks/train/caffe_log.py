"""Owns reading `caffe train` logs: line events, rows of numbers, Caffe-style CSVs (the loss
figure drawn from them is landmarks.train.loss_curves).

`parse_line(line)` says what one line means; `LogFollower.feed(line)` adds what needs the lines
before it (elapsed seconds, the iteration an output line belongs to), for a live run or a file.
`parse_log(path_or_lines)` is built on the follower and returns a `CaffeLog` of plain rows
(dicts) for the train and the test phase. A row holds `NumIters`, `Seconds`, `LearningRate`
and one key per net output with the RAW value Caffe printed (`loss = 7.6`), as Caffe's
tools/extra/parse_log.py does, so `write_csv` gives the same columns; train rows also hold
`IterationLoss`, the `Iteration N, loss = X` value (Caffe's smoothed total loss).
`loss_weights` keeps each output's weight from `(* 100 = 760 loss)`;
`loss_curves.weighted_series` multiplies it back in for plotting.

Rules, each chosen to match what the log means rather than what it literally repeats:
- Seconds count from the first glog line's timestamp and never decrease (lines written by two
  threads can be a few microseconds out of order); a month that goes backwards in a log without
  years in its prefix is a new year.
- A log may hold several runs: `caffe train` resumed from a snapshot and appended to the same
  file, or restarted. A later run supersedes everything earlier runs said about iterations >= R,
  R being its first logged iteration, or the snapshot iteration + 1 when its `Resuming from
  ..._iter_N.solverstate` line names one, whichever is smaller: those rows came from weights the
  later run threw away. So a repeated iteration keeps the later value, and an abandoned tail the
  later run did not log again is dropped too. A new run starts at a `Resuming from`,
  `Restoring previous solver status` or `Solving` line, or where iteration numbers go back.
  Rows are sorted by iteration.
- A last line without a newline is a line the writer was cut off in (a killed run, a log still
  being written): it is left out, and kept in `truncated_line` for the record.
- `nan`, `-nan`, `inf` and `-inf` are parsed as floats and kept; the figure skips and reports them.
"""
import bisect
import csv
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

META_COLUMNS = ("NumIters", "Seconds", "LearningRate")  # Caffe's parse_log.py column order

_NUM = r"[-+]?(?:nan|inf(?:inity)?|\d+\.?\d*(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?)"
# I1125 01:02:03.456789 12345 solver.cpp:218] msg  (newer glog: I20241125 ...)
_GLOG = re.compile(r"\s*[IWEF](\d{4})?(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d+)\s+\S+\s+[^\]\s]+\] ?(.*)")
_CREATED = re.compile(r"Log file created at: (\d{4})/")
_TRAIN_ITER = re.compile(rf"Iteration (\d+)(?: \([^)]*\))?, loss = ({_NUM})", re.I)
_LR = re.compile(rf"Iteration (\d+), lr = ({_NUM})", re.I)
_TEST_START = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
_OUTPUT = re.compile(rf"(Train|Test) net output #\d+: (\S+) = ({_NUM})(?: \(\* ({_NUM}) = ({_NUM}) loss\))?",
                     re.I)
_RUN_START = re.compile(r"^(?:Resuming from |Restoring previous solver status from |Solving )")
_SNAPSHOT_ITER = re.compile(r"_iter_(\d+)\.solverstate")


class NotACaffeLog(ValueError):
    """The input holds no line that Caffe (glog) wrote."""


def _split_glog(line):
    """(glog prefix match or None, the message after it)."""
    glog = _GLOG.match(line)
    return (glog, glog.group(8)) if glog else (None, line.strip())


def parse_line(line):
    """What one log line says, from the line alone, or None. Events (dicts, "kind" first):
      train         iteration, loss     `Iteration N[ (..iter/s..)], loss = X` (Caffe's smoothed total)
      lr            iteration, value    `Iteration N, lr = X`
      test_start    iteration, net      `Iteration N, Testing net (#k)`
      train_output, test_output         name, value (raw), weight and weighted (None without
                                        `(* w = X loss)`); LogFollower adds their iteration
      run_start     snapshot_iter       `Resuming from`, `Restoring previous solver status`, `Solving`
      done                              `Optimization Done.`
    """
    message = _split_glog(line)[1]
    if found := _OUTPUT.search(message):
        phase, name, value, weight, weighted = found.groups()
        return {"kind": f"{phase.lower()}_output", "name": name, "value": float(value),
                "weight": None if weight is None else float(weight),
                "weighted": None if weighted is None else float(weighted)}
    if found := _TRAIN_ITER.search(message):
        return {"kind": "train", "iteration": int(found.group(1)), "loss": float(found.group(2))}
    if found := _LR.search(message):
        return {"kind": "lr", "iteration": int(found.group(1)), "value": float(found.group(2))}
    if found := _TEST_START.search(message):
        return {"kind": "test_start", "iteration": int(found.group(1)), "net": int(found.group(2))}
    if _RUN_START.match(message):
        snapshot = _SNAPSHOT_ITER.search(message)
        return {"kind": "run_start", "snapshot_iter": int(snapshot.group(1)) if snapshot else None}
    if message.startswith("Optimization Done."):
        return {"kind": "done"}
    return None


class LogFollower:
    """Reads a log line by line, a finished file or a live `caffe train`, and returns
    parse_line's events with what a line alone lacks: `seconds` since the first glog line, and
    the `iteration` (and test `net`) that output lines belong to (None before any)."""

    def __init__(self, year=None):
        self.clock = _Clock(year or datetime.now().year)
        self.seconds = math.nan  # until the first glog line
        self.saw_glog = False
        self.train_iteration = self.test_iteration = None
        self.test_net = 0

    def feed(self, line):
        glog, message = _split_glog(line)
        if glog:
            self.saw_glog = True
            self.seconds = self.clock.seconds(glog)
        elif found := _CREATED.search(message):  # glog's own log-file header names the year
            self.clock.year = int(found.group(1))
        event = parse_line(line)
        if event is None:
            return None
        kind = event["kind"]
        if kind == "train":
            self.train_iteration = event["iteration"]
        elif kind == "test_start":
            self.test_iteration, self.test_net = event["iteration"], event["net"]
        elif kind == "train_output":
            event["iteration"] = self.train_iteration
        elif kind == "test_output":
            event["iteration"], event["net"] = self.test_iteration, self.test_net
        elif kind == "run_start":
            self.train_iteration = self.test_iteration = None
        event["seconds"] = self.seconds
        return event


@dataclass
class CaffeLog:
    source: str                     # the path, a file object's name, or "<lines>"
    train: list                     # rows (dicts), sorted by NumIters
    test: list
    train_outputs: list             # net output names, in the order Caffe printed them
    test_outputs: list
    loss_weights: dict              # {"train": {name: weight}, "test": {...}}; only outputs
                                    # Caffe printed "(* w = X loss)" for, i.e. the losses
    start_time: datetime | None     # first glog line (year from the prefix, header or file)
    resumed_at: list = field(default_factory=list)  # per later run: its snapshot's iteration, else R
    finished: bool = False          # the last run printed "Optimization Done."
    truncated_line: str | None = None

    def rows(self, phase):
        return self.train if phase == "train" else self.test

    def outputs(self, phase):
        return self.train_outputs if phase == "train" else self.test_outputs


class _Run:
    """What one `caffe train` run in the log said: rows keyed by iteration, lr by iteration."""

    def __init__(self):
        self.train, self.test, self.lr = {}, {}, {}
        self.last_iter = None
        self.snapshot_iter = None  # from "Resuming from <prefix>_iter_N.solverstate"

    def first_iter(self):
        iters = [*self.train, *self.test, *self.lr]
        return min(iters) if iters else None

    def supersedes_from(self):
        """Earlier runs' rows from this iteration on belong to weights this run threw away: all
        after the snapshot it resumed from, and any iteration it logged again."""
        first = self.first_iter()
        if self.snapshot_iter is not None:
            return min(first, self.snapshot_iter + 1)
        return first


def _open_lines(path_or_lines):
    """(source name, lines without newlines, truncated last line or None, year hint)."""
    if isinstance(path_or_lines, (str, os.PathLike)):
        path = Path(path_or_lines)
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            text = handle.read()
        raw = text.split("\n")
        tail = raw.pop()  # "" when the file ends with a newline
        return str(path), [line.rstrip("\r") for line in raw], tail or None, \
            datetime.fromtimestamp(path.stat().st_mtime).year
    raw = list(path_or_lines)
    tail = None
    # Lines that carry their newlines (file.readlines()) show where the writer was cut off.
    if len(raw) > 1 and raw[-1] and not raw[-1].endswith("\n") and raw[-2].endswith("\n"):
        tail = raw.pop()
    source = str(getattr(path_or_lines, "name", "<lines>"))
    return source, [line.rstrip("\r\n") for line in raw], tail, datetime.now().year


class _Clock:
    """Seconds since the first glog line, never decreasing, across midnight and new year."""

    def __init__(self, year):
        self.year, self.start, self.elapsed, self.last_month = year, None, 0.0, None

    def seconds(self, match):
        year, month, day, hh, mm, ss, frac = match.groups()[:7]
        month = int(month)
        if year:
            self.year = int(year)
        elif self.last_month is not None and month < self.last_month:
            self.year += 1
        self.last_month = month
        try:
            stamp = datetime(self.year, month, int(day), int(hh), int(mm), int(ss), int(frac[:6].ljust(6, "0")))
        except ValueError:  # 29 February in a guessed year: keep the previous time
            return self.elapsed
        if self.start is None:
            self.start = stamp
        self.elapsed = max(self.elapsed, (stamp - self.start).total_seconds())
        return self.elapsed


def parse_log(path_or_lines):
    """Parses a `caffe train` log (a path, or an iterable of lines such as an open file or
    captured stderr's splitlines()) into a CaffeLog.

    Raises FileNotFoundError for a missing path and NotACaffeLog when nothing in it was written
    by Caffe; both messages name the source.
    """
    source, lines, tail, year_hint = _open_lines(path_or_lines)
    follower = LogFollower(year_hint)
    runs, weights = [_Run()], {"train": {}, "test": {}}
    names = {"train": [], "test": []}
    saw_event, finished = False, False
    train_row = test_row = None
    for line in lines:
        event = follower.feed(line)
        if event is None:
            continue
        saw_event, kind, run = True, event["kind"], runs[-1]
        if kind == "run_start":
            if run.first_iter() is not None:
                runs.append(run := _Run())
            if event["snapshot_iter"] is not None:
                run.snapshot_iter = event["snapshot_iter"]
            train_row = test_row = None
            finished = False
        elif kind == "done":
            finished = True
        elif kind in ("train_output", "test_output"):
            phase = kind[:-len("_output")]
            row = train_row if phase == "train" else test_row
            if row is None:  # an output with no iteration line before it cannot be placed
                continue
            name = event["name"] if not event.get("net") else f"{event['name']}@net{event['net']}"
            if name not in names[phase]:
                names[phase].append(name)
            if event["weight"] is not None:
                weights[phase][name] = event["weight"]
            # Caffe's parse_log times a row by its first output line (_ordered drops the flag)
            if not row.get("_timed"):
                row["Seconds"], row["_timed"] = event["seconds"], True
            row[name] = event["value"]
        else:  # train, lr, test_start: lines that name an iteration
            iteration = event["iteration"]
            if run.last_iter is not None and iteration < run.last_iter:  # a restart with no header line
                runs.append(run := _Run())
                train_row = test_row = None
            run.last_iter = iteration
            if kind == "train":
                train_row = run.train[iteration] = {"NumIters": iteration, "Seconds": event["seconds"],
                                                    "IterationLoss": event["loss"]}
            elif kind == "lr":
                run.lr[iteration] = event["value"]
            else:
                test_row = run.test.setdefault(iteration, {"NumIters": iteration, "Seconds": event["seconds"]})
                if event["net"] == 0 and any(key in names["test"] for key in test_row):
                    test_row.clear()  # the same run tested this iteration again: the later test wins
                    test_row.update(NumIters=iteration, Seconds=event["seconds"])
    if not (saw_event or follower.saw_glog):
        raise NotACaffeLog(f"{source}: no Caffe log lines found (expected glog lines such as "
                           f"'I1125 01:02:03.456789 123 solver.cpp:218] Iteration 100, loss = 0.5')")
    train, test, lr, resumed_at = _merge_runs(runs)
    test = {it: row for it, row in test.items() if any(name in row for name in names["test"])}
    lr_iters = sorted(lr)
    for row in (*train.values(), *test.values()):
        row["LearningRate"] = _lr_at(row["NumIters"], lr_iters, lr)
    return CaffeLog(source=source, train=_ordered(train, names["train"], ("IterationLoss",)),
                    test=_ordered(test, names["test"], ()), train_outputs=names["train"],
                    test_outputs=names["test"], loss_weights=weights, start_time=follower.clock.start,
                    resumed_at=resumed_at, finished=finished, truncated_line=tail)


def _merge_runs(runs):
    """Later runs supersede earlier ones from their first iteration on (see the module doc)."""
    train, test, lr, resumed_at = {}, {}, {}, []
    for run in runs:
        if run.first_iter() is None:
            continue
        first = run.supersedes_from()
        if train or test or lr:
            resumed_at.append(run.snapshot_iter if run.snapshot_iter is not None else run.first_iter())
        for rows in (train, test, lr):
            for iteration in [it for it in rows if it >= first]:
                del rows[iteration]
        train.update(run.train)
        test.update(run.test)
        lr.update(run.lr)
    return train, test, lr, resumed_at


def _lr_at(iteration, lr_iters, lr):
    """The lr logged for the latest iteration <= `iteration`; before the first one, the first
    (as Caffe's parse_log fills its initial NaNs); NaN when the log printed no lr at all."""
    if not lr_iters:
        return math.nan
    index = bisect.bisect_right(lr_iters, iteration) - 1
    return lr[lr_iters[max(index, 0)]]


def _ordered(rows, outputs, extra):
    keys = (*META_COLUMNS, *extra, *outputs)
    return [{key: row[key] for key in keys if key in row} for _, row in sorted(rows.items())]


_TIME_LAYER = re.compile(rf"\]\s*(\S+)\s+(forward|backward): ({_NUM}) ms\.")
_TIME_TOTAL = re.compile(rf"Average (Forward pass|Backward pass|Forward-Backward): ({_NUM}) ms\.")


def parse_time(text):
    """`caffe time` output -> ({layer: {"forward": ms, "backward": ms}}, {"Forward pass": ms,
    "Backward pass": ms, "Forward-Backward": ms}), the averages Caffe prints."""
    layers, totals = {}, {}
    for name, kind, ms in _TIME_LAYER.findall(text):
        layers.setdefault(name, {})[kind] = float(ms)
    for kind, ms in _TIME_TOTAL.findall(text):
        totals[kind] = float(ms)
    return layers, totals


def write_csv(log, phase, path):
    """Writes one phase ("train" or "test") with Caffe parse_log.py's columns: NumIters, Seconds,
    LearningRate, then one column per net output (raw values). Rows that carry no net output
    (Caffe's closing `Iteration N, loss` line) are left out, as parse_log.py does; an output a
    row lacks is left empty."""
    columns = [*META_COLUMNS, *log.outputs(phase)]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in log.rows(phase):
            if any(name in row for name in log.outputs(phase)):
                writer.writerow([_cell(row.get(column)) for column in columns])
    return path


def _cell(value):
    return "" if value is None else str(value)  # str(float) round-trips: 0.0123, nan, inf
