"""Plot Caffe training logs: train and test loss against iteration, learning rate on the right.

  python tools/plot_log.py runs/demo/level1/train.log
  python tools/plot_log.py runs/a/level1/train.log runs/b/level1/train.log --labels a b --smooth 20 --logy

Writes loss_curves.png and, per log, <label>.train.csv and <label>.test.csv with the columns of
Caffe's tools/extra/parse_log.py (NumIters, Seconds, LearningRate, one column per net output,
raw values). The plot shows each loss output as Caffe prints it after `(* w = X loss)`, i.e.
weighted; the legend says which. Non-finite losses are not drawn and are reported here.
"""
import argparse
import re
import sys
from pathlib import Path

from landmarks.common import checks
from landmarks.evaluate.plots import save_figure
from landmarks.train.caffe_log import NotACaffeLog, parse_log, write_csv
from landmarks.train.loss_curves import loss_figure, nonfinite_notes, summarize


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", metavar="LOG", help="`caffe train` logs (its stderr)")
    parser.add_argument("--out", help="folder for the PNG and CSVs (default: the first log's folder)")
    parser.add_argument("--labels", nargs="+", metavar="LABEL",
                        help="one legend label per log (default: parent folder/file stem)")
    parser.add_argument("--smooth", type=int, default=1, metavar="N",
                        help="draw train curves as a trailing mean of N points (default 1: as logged)")
    parser.add_argument("--logy", action="store_true", help="log scale for the loss axis")
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.logs):
        parser.error(f"--labels needs one label per log: {len(args.logs)} logs, {len(args.labels)} labels")
    if args.labels and len({file_stem(label) for label in args.labels}) != len(args.labels):
        parser.error("--labels must differ: they name the CSV files")
    if args.smooth < 1:
        parser.error("--smooth must be at least 1")
    return args


def default_labels(paths):
    """parent/stem of each path, with more parent folders where that alone would repeat, so
    runs/a/level1/train.log and runs/b/level1/train.log get distinct labels (and CSV names)."""
    parts = [Path(p).with_suffix("").parts for p in paths]
    for depth in range(2, max(map(len, parts)) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return ["/".join(p) for p in parts]


def file_stem(label):
    return re.sub(r"[^\w.-]+", "_", label).strip("_") or "log"


def _loss(pair):
    return "-" if pair is None else f"{pair[1]:.6g} (iteration {pair[0]})"


def report(label, log):
    s = summarize(log)
    if s["iterations"] is None:
        return f"{label}: no iterations logged"
    state = "finished" if s["finished"] else "no 'Optimization Done' (interrupted or still running)"
    lines = [f"{label}: iterations {s['iterations'][0]}..{s['iterations'][1]} "
             f"({s['train_rows']} train rows, {s['test_rows']} test rows), {state}"]
    if s["resumed_at"]:
        lines.append(f"  resumed from iteration {', '.join(map(str, s['resumed_at']))}: "
                     "the later run's rows replace the earlier run's from there on")
    if log.truncated_line:
        lines.append(f"  last line cut off and ignored: {log.truncated_line[:60]!r}")
    lines.append(f"  last train {s['train_output']}: {_loss(s['last_train'])}; "
                 f"last test {s['test_output']}: {_loss(s['last_test'])}; "
                 f"min test: {_loss(s['min_test'])}  (weighted as Caffe prints them)")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    logs = []
    for path in args.logs:
        try:
            logs.append(parse_log(path))
        except FileNotFoundError:
            print(f"plot_log: error: {path}: no such file", file=sys.stderr)
            return 1
        except (NotACaffeLog, OSError) as error:
            print(f"plot_log: error: {error}", file=sys.stderr)
            return 1
    labels = args.labels or default_labels(args.logs)
    out = Path(args.out or Path(args.logs[0]).parent)
    problem = checks.writable_problem(out)
    if problem:
        print(f"plot_log: error: {problem}", file=sys.stderr)
        return 2
    written = []
    try:
        for label, log in zip(labels, logs):
            for phase in ("train", "test"):
                written.append(write_csv(log, phase, out / f"{file_stem(label)}.{phase}.csv"))
        written.append(out / "loss_curves.png")
        save_figure(loss_figure(logs, labels, smooth=args.smooth, logy=args.logy), written[-1], dpi=100, tight=False)
    except OSError as err:  # the writers leave nothing cut under a final name
        if not checks.is_disk_error(err):
            raise
        print(f"plot_log: error: {checks.disk_message(err, out)}", file=sys.stderr)
        return 2
    for label, log in zip(labels, logs):
        print(report(label, log))
    for note in nonfinite_notes(logs, labels):
        print(f"note: {note}")
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
