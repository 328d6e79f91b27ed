"""Owns the loss curves drawn from a parsed Caffe log (landmarks.train.caffe_log): which outputs are
losses, their series with Caffe's loss weight multiplied back in (the value Caffe prints as
`(* 100 = 760 loss)`), the summary numbers a report shows, the notes on nan/inf points, and the
figure of train and test loss with the learning rate."""
import numpy as np


def plotted_outputs(log, phase):
    """The outputs that are losses (those Caffe printed a loss weight for), else all of them."""
    losses = [name for name in log.outputs(phase) if name in log.loss_weights[phase]]
    return losses or list(log.outputs(phase))


def weighted_series(log, phase, name):
    """(iterations, values) of one output, times its loss weight when it has one: the value in
    Caffe's `(* w = X loss)`. Rows that lack the output are skipped; non-finite values kept."""
    rows = [row for row in log.rows(phase) if name in row]
    weight = log.loss_weights[phase].get(name, 1.0)
    return (np.array([row["NumIters"] for row in rows], dtype=np.int64),
            np.array([row[name] for row in rows], dtype=np.float64) * weight)


def summarize(log):
    """Plain numbers for a report: iteration range, row counts, last train/test loss, best test."""
    out = {"train_rows": len(log.train), "test_rows": len(log.test), "finished": log.finished,
           "resumed_at": log.resumed_at}
    iters = [row["NumIters"] for row in (*log.train, *log.test)]
    out["iterations"] = (min(iters), max(iters)) if iters else None
    for phase in ("train", "test"):
        names = plotted_outputs(log, phase)
        out[f"{phase}_output"] = names[0] if names else None
        it, values = weighted_series(log, phase, names[0]) if names else (np.array([]), np.array([]))
        out[f"last_{phase}"] = (int(it[-1]), float(values[-1])) if len(it) else None
        if phase == "test":
            finite = np.flatnonzero(np.isfinite(values))
            best = finite[np.argmin(values[finite])] if len(finite) else None
            out["min_test"] = (int(it[best]), float(values[best])) if best is not None else None
    return out


def _trailing_mean(values, window):
    if window <= 1 or len(values) == 0:
        return values
    sums = np.concatenate([[0.0], np.cumsum(values)])
    hi = np.arange(1, len(values) + 1)
    lo = np.maximum(hi - window, 0)
    return (sums[hi] - sums[lo]) / (hi - lo)


def _legend_name(log, phase, name, smooth):
    weight = log.loss_weights[phase].get(name)
    text = f"{phase} {name} " + (f"(weighted, ×{weight:g})" if weight is not None else "(raw)")
    return text + (f", mean of {smooth}" if smooth > 1 and phase == "train" else "")


def _loss_series(log, phase, smooth=1):
    """[(output name, iterations, values, legend text)] of what the figure draws for a phase."""
    series = [(name, *weighted_series(log, phase, name), _legend_name(log, phase, name, smooth))
              for name in plotted_outputs(log, phase)]
    if phase == "train" and not series and log.train:  # a log without output lines
        series = [("IterationLoss", np.array([row["NumIters"] for row in log.train]),
                   np.array([row["IterationLoss"] for row in log.train]), "train loss (iteration line)")]
    return series


def nonfinite_notes(logs, labels):
    """One line per plotted series that holds nan/inf: how many points, from which iteration."""
    notes = []
    for log, label in zip(logs, labels):
        for phase in ("train", "test"):
            for name, iters, values, _ in _loss_series(log, phase):
                bad = ~np.isfinite(values)
                if bad.any():
                    notes.append(f"{label}: {phase} {name}: {int(bad.sum())} non-finite point(s) not drawn, "
                                 f"first at iteration {int(iters[bad][0])}")
    return notes


def loss_figure(logs, labels, smooth=1, logy=False):
    """A matplotlib Figure of each log's train and test loss (left axis) and learning rate
    (right axis, a log scale when it spans 10x or more). Non-finite points are not drawn
    (nonfinite_notes says which). `smooth` > 1 draws the train curves as a trailing mean over
    that many finite points; test points are few and already averages over test_iter batches."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend needed

    fig = Figure(figsize=(10, 6), dpi=100)
    ax = fig.add_subplot()
    ax_lr = ax.twinx()
    handles, lr_values = [], []
    for index, (log, label) in enumerate(zip(logs, labels)):
        color = f"C{index % 10}"
        for phase, style in (("train", dict(lw=1.2)), ("test", dict(ls="--", marker="o", ms=4))):
            for line_no, (_, iters, values, text) in enumerate(_loss_series(log, phase, smooth)):
                finite = np.isfinite(values)
                iters, values = iters[finite], values[finite]
                if phase == "train":
                    values = _trailing_mean(values, smooth)
                handles += ax.plot(iters, values, color=color, alpha=1.0 if line_no == 0 else 0.6,
                                   label=f"{label}: {text}", **style)
        rows = log.train or log.test
        lr = np.array([(r["NumIters"], r["LearningRate"]) for r in rows if np.isfinite(r["LearningRate"])])
        if len(lr):
            lr_values.extend(lr[:, 1])
            handles += ax_lr.step(lr[:, 0], lr[:, 1], where="post", color=color, ls=":", lw=1.5,
                                  label=f"{label}: learning rate (right axis)")
    if logy:
        ax.set_yscale("log")
    positive = [v for v in lr_values if v > 0]
    if positive and max(positive) >= 10 * min(positive):  # lr steps by 10x: a log axis shows each
        ax_lr.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (weighted as Caffe prints it; see legend)")
    ax_lr.set_ylabel("learning rate")
    ax.grid(True, alpha=0.3)
    ax.set_title("Caffe training: loss (solid: train, dashed: test) and learning rate (dotted)")
    if handles:  # a figure legend is drawn above both axes, so no lr line crosses it
        fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(1, 1), bbox_transform=ax.transAxes,
                   fontsize="small", framealpha=0.9)
    fig.tight_layout()
    return fig
