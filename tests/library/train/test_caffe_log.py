"""landmarks.train.caffe_log on real `caffe train` logs and crafted ones (tests/logs/).

real_caffe_*.log come from tests/logs/make_real_caffe_logs.py; the crafted logs pin down one
behaviour each (line styles, year rollover, resume, non-finite values) with hand-picked values.
"""
import math
import os
import re

import numpy as np
import pytest

from landmarks.train.caffe_log import LogFollower, NotACaffeLog, parse_line, parse_log, write_csv
from landmarks.train.loss_curves import loss_figure, nonfinite_notes, plotted_outputs, summarize, weighted_series
from support import ROOT

LOGS = ROOT / "tests" / "logs"
REAL = LOGS / "real_caffe_train.log"
REAL_RESUMED = LOGS / "real_caffe_resumed.log"


def iters(rows):
    return [row["NumIters"] for row in rows]


def printed(text, phase):
    """(raw, weighted) values of `phase` net output #0, straight from the log text."""
    return [(float(raw), float(weighted)) for raw, weighted in
            re.findall(rf"{phase} net output #0: loss = (\S+) \(\* 100 = (\S+) loss\)", text)]


def test_real_log_rows_match_what_caffe_printed():
    log = parse_log(REAL)
    text = REAL.read_text()
    assert iters(log.train) == list(range(31))  # display 1; 30 is Caffe's closing forward pass
    assert iters(log.test) == [0, 10, 20, 30]
    assert log.train_outputs == log.test_outputs == ["loss"]
    assert log.loss_weights == {"train": {"loss": 100.0}, "test": {"loss": 100.0}}
    assert [row["loss"] for row in log.train if "loss" in row] == [raw for raw, _ in printed(text, "Train")]
    assert [row["loss"] for row in log.test] == [raw for raw, _ in printed(text, "Test")]
    # the plotted value is the one Caffe prints after "(* 100 =", to its 6 significant digits
    _, weighted = weighted_series(log, "test", "loss")
    np.testing.assert_allclose(weighted, [w for _, w in printed(text, "Test")], rtol=1e-5)
    # multistep: lr 0.1, times 0.1 from iteration 15
    assert [row["LearningRate"] for row in log.train] == [0.1] * 15 + [0.01] * 16
    seconds = [row["Seconds"] for row in log.train]
    assert seconds[0] >= 0 and seconds == sorted(seconds)
    assert log.finished and log.resumed_at == [] and log.truncated_line is None
    # captured stderr (e.g. subprocess.run(...).stderr) parses the same as the file
    assert parse_log(text.splitlines()).train == log.train
    assert log.start_time is not None and (log.start_time.month, log.start_time.day) == \
        tuple(int(x) for x in re.match(r"I\d{4}(\d\d)(\d\d)", text).groups())


def test_old_and_new_iteration_line_styles_give_the_same_rows():
    body = ["I0101 10:00:0{s}.000000 1 solver.cpp:218] {iteration}, loss = 2.5",
            "I0101 10:00:0{s}.000001 1 solver.cpp:237]     Train net output #0: loss = 0.025 (* 100 = 2.5 loss)",
            "I0101 10:00:0{s}.000002 1 sgd_solver.cpp:105] Iteration {n}, lr = 0.001"]
    old = [line.format(s=n, n=n, iteration=f"Iteration {n}") for n in (1, 2) for line in body]
    new = [line.format(s=n, n=n, iteration=f"Iteration {n} (13.9 iter/s, 7.2s/100 iters)")
           for n in (1, 2) for line in body]
    old_log, new_log = parse_log(old), parse_log(new)
    assert old_log.train == new_log.train
    # a row is timed by its first output line, as in Caffe's parse_log.py
    assert old_log.train == [
        {"NumIters": n, "Seconds": pytest.approx(n - 1 + 1e-6), "LearningRate": 0.001, "IterationLoss": 2.5,
         "loss": 0.025} for n in (1, 2)]


def test_csv_header_and_values_are_exact(tmp_path):
    log = parse_log(LOGS / "crafted_new_style.log")
    write_csv(log, "train", tmp_path / "a.train.csv")
    write_csv(log, "test", tmp_path / "a.test.csv")
    # Seconds from the first glog line (23:59:50 on 31 Dec) across the new year; the closing
    # "Iteration 400, loss" line has no net output, so no train row at 400 (as Caffe's parse_log.py).
    assert (tmp_path / "a.train.csv").read_text() == (
        "NumIters,Seconds,LearningRate,loss,mae\n"
        "0,2.300001,0.001,0.49,0.3\n"
        "100,9.5001,0.001,0.025,0.12\n"
        "200,15.1001,0.0001,0.015,0.09\n"
        "300,22.6001,0.0001,0.0125,0.085\n")
    # test at 200: its output line is stamped 1 us before another thread's line, and Seconds
    # never go back (15.0, not 14.999999)
    assert (tmp_path / "a.test.csv").read_text() == (
        "NumIters,Seconds,LearningRate,loss,mae\n"
        "0,2.25,0.001,0.5,0.25\n"
        "200,15.0,0.0001,0.02,0.1\n"
        "400,30.5,0.0001,0.018,0.095\n")
    assert log.start_time.year == 2023  # from glog's "Log file created at" header
    assert plotted_outputs(log, "train") == ["loss"]  # mae has no loss weight: not a loss


def test_resumed_log_later_run_supersedes_from_its_snapshot():
    log = parse_log(LOGS / "crafted_resumed.log")
    # Run 1 logged 0..500 (display 100, tests every 200) and was killed; run 2 resumed from
    # the iteration-300 snapshot with display and tests every 250, so it logged 500 and 750.
    assert iters(log.train) == [0, 100, 200, 300, 500, 750]  # run 1's 400 was after the snapshot
    assert [row.get("loss") for row in log.train] == [8, 7, 6, 5, 3.2, None]  # 500: run 2's
    assert iters(log.test) == [0, 200, 500, 750]
    assert [row["loss"] for row in log.test] == [9, 6.5, 3.25, 2.75]
    assert [row["LearningRate"] for row in log.train] == [0.01] * 4 + [0.005] * 2
    assert log.resumed_at == [300] and log.finished
    seconds = [row["Seconds"] for row in log.train]
    assert seconds == sorted(seconds) and seconds[4] == pytest.approx(25 * 3600 + 20.2)


def test_real_resumed_log_keeps_the_resumed_runs_values():
    log = parse_log(REAL_RESUMED)
    first_run, second_run = REAL_RESUMED.read_text().split("Resuming from")
    assert iters(log.train) == list(range(31))  # each iteration once, sorted
    losses = [row["loss"] for row in log.train if "loss" in row]
    assert losses[:20] == [raw for raw, _ in printed(first_run, "Train")][:20]
    assert losses[20:] == [raw for raw, _ in printed(second_run, "Train")]
    assert losses[20:26] != [raw for raw, _ in printed(first_run, "Train")][20:26]  # the runs differ
    assert [row["LearningRate"] for row in log.train][19:] == [0.01] + [0.005] * 11
    assert log.resumed_at == [20] and log.finished


def cut_real_log(tmp_path, keep_chars_of_number):
    """The real log cut inside iteration 25's train output number, as a killed run leaves it."""
    text = REAL.read_text()
    start = text.index("Train net output #0: loss = ", text.index("] Iteration 25, loss"))
    cut = start + len("Train net output #0: loss = ") + keep_chars_of_number
    path = tmp_path / "killed.log"
    path.write_text(text[:cut])
    return path, text[start:cut]


def test_interrupted_log_drops_the_cut_line(tmp_path):
    path, cut_line = cut_real_log(tmp_path, keep_chars_of_number=3)  # "7.4" of "7.47538"
    log = parse_log(path)
    assert iters(log.train) == list(range(26))
    assert "loss" not in log.train[25]  # a cut-off number is not a value
    assert all("loss" in row for row in log.train[:25])
    assert log.truncated_line.endswith(cut_line) and not log.finished
    with open(path) as handle:  # lines that keep their newlines show the cut as well
        assert parse_log(handle).train == log.train


def test_nonfinite_values_are_kept_as_floats():
    log = parse_log(LOGS / "crafted_old_style_nonfinite.log")
    train = {row["NumIters"]: row["loss"] for row in log.train}
    assert list(train) == [0, 10, 20, 30, 40, 50]
    assert math.isnan(train[20]) and train[30] == math.inf and math.isnan(train[40])  # 40: "-nan"
    assert math.isnan(log.train[2]["IterationLoss"])
    assert [row["loss"] for row in log.test] == [-math.inf, 1.5, -math.inf]
    summary = summarize(log)
    assert summary["min_test"] == (40, 1.5)  # the best finite test loss
    assert summary["last_test"] == (60, -math.inf) and summary["last_train"] == (50, 1.25)


def test_figure_skips_and_reports_nonfinite_points(tmp_path):
    log = parse_log(LOGS / "crafted_old_style_nonfinite.log")
    fig = loss_figure([log], ["x"])
    assert nonfinite_notes([log], ["x"]) == ["x: train loss: 3 non-finite point(s) not drawn, first at iteration 20",
                     "x: test loss: 2 non-finite point(s) not drawn, first at iteration 20"]
    train_line, test_line = fig.axes[0].get_lines()
    assert list(train_line.get_xdata()) == [0, 10, 50] and list(train_line.get_ydata()) == [4, 2, 1.25]
    assert list(test_line.get_xdata()) == [40]
    fig.savefig(tmp_path / "nonfinite.png")
    assert (tmp_path / "nonfinite.png").stat().st_size > 10_000


def test_two_logs_overlaid_with_a_legend_naming_both():
    logs = [parse_log(REAL), parse_log(REAL_RESUMED)]
    fig = loss_figure(logs, ["first run", "resumed run"])
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert legend == [f"{label}: {what}" for label in ("first run", "resumed run")
                      for what in ("train loss (weighted, ×100)", "test loss (weighted, ×100)",
                                   "learning rate (right axis)")]
    assert nonfinite_notes(logs, ["first run", "resumed run"]) == []
    loss_axis, lr_axis = fig.axes
    assert len(loss_axis.get_lines()) == 4 and len(lr_axis.get_lines()) == 2
    assert lr_axis.get_yscale() == "log"  # lr steps 0.1 -> 0.005: a log axis shows each step


def test_smoothing_is_a_trailing_mean_of_the_train_points():
    log = parse_log(LOGS / "crafted_new_style.log")
    fig = loss_figure([log], ["s"], smooth=2)
    train_line = fig.axes[0].get_lines()[0]
    assert train_line.get_label() == "s: train loss (weighted, ×100), mean of 2"
    np.testing.assert_allclose(train_line.get_ydata(), [49, (49 + 2.5) / 2, (2.5 + 1.5) / 2, (1.5 + 1.25) / 2])


def test_non_caffe_input_is_refused_by_name(tmp_path):
    with pytest.raises(NotACaffeLog, match="not_a_caffe_log.txt"):
        parse_log(LOGS / "not_a_caffe_log.txt")
    (tmp_path / "empty.log").write_text("")
    with pytest.raises(NotACaffeLog, match="empty.log"):
        parse_log(tmp_path / "empty.log")
    with pytest.raises(FileNotFoundError):
        parse_log(tmp_path / "missing.log")


def test_parse_line_reads_one_line_alone():
    assert parse_line("I0101 10:00:00.000000 1 solver.cpp:218] Iteration 7 (2 iter/s, 50s/100 iters), "
                      "loss = 0.5") == {"kind": "train", "iteration": 7, "loss": 0.5}
    assert parse_line("I0101 10:00:00.000000 1 solver.cpp:397]     Test net output #0: loss = 0.02 "
                      "(* 100 = 2 loss)") == {"kind": "test_output", "name": "loss", "value": 0.02,
                                              "weight": 100.0, "weighted": 2.0}
    assert parse_line("    Train net output #1: mae = 0.3")["weighted"] is None
    assert math.isnan(parse_line("I0101 10:00:00.000000 1 solver.cpp:228] Iteration 3, loss = -nan")["loss"])
    assert parse_line("I0101 10:00:00.000000 1 caffe.cpp:228] Resuming from s/x_iter_300.solverstate") == \
        {"kind": "run_start", "snapshot_iter": 300}
    assert parse_line("I0101 10:00:00.000000 1 net.cpp:84] Creating Layer loss") is None


def test_follower_gives_output_lines_their_iteration_as_a_live_run_is_read():
    follower = LogFollower()
    with open(REAL) as handle:  # line by line, as train.py reads `caffe train` while it runs
        events = [event for line in handle if (event := follower.feed(line))]
    tests = [(e["iteration"], e["weighted"]) for e in events if e["kind"] == "test_output"]
    assert tests == [(it, w) for it, (_, w) in zip((0, 10, 20, 30), printed(REAL.read_text(), "Test"))]
    assert [e["iteration"] for e in events if e["kind"] == "train_output"] == list(range(30))
    seconds = [e["seconds"] for e in events]
    assert seconds == sorted(seconds) and seconds[0] > 0


def test_parse_time_reads_real_caffe_time_output(tmp_path):
    """`caffe time` on a real one-layer net: per-layer forward/backward and the averages."""
    import subprocess

    from landmarks.common.caffe_runtime import caffe_binary
    from landmarks.train import bench as train_bench
    from landmarks.train.caffe_log import parse_time

    model = train_bench._single_layer_prototxt(tmp_path, "layer", (2, 8, 6, 6), 3, 2, 1)
    proc = subprocess.run([caffe_binary(), "time", f"-model={model}", "-iterations=3"], capture_output=True,
                          text=True, env=dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    layers, totals = parse_time(proc.stderr)
    assert set(layers) == {"data", "out"}
    assert layers["out"]["forward"] >= 0 and layers["out"]["backward"] >= 0
    assert set(totals) == {"Forward pass", "Backward pass", "Forward-Backward"}
    assert parse_time("no timing here") == ({}, {})
