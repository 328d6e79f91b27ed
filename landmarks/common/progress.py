"""Owns progress output: a tqdm bar on a terminal, a few plain lines anywhere else.

A bar redraws itself with carriage returns; written to a file or a pipe (CI, nohup, `| tee`)
that is one endless line (30 kB for a 10,000-image prediction). `bar(...)` takes tqdm's
arguments and, when the stream is not a terminal, prints one line at the start, at every
quarter and at the end instead.
"""
import sys

from tqdm import tqdm

QUARTERS = 4


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class PlainLines(tqdm):
    """tqdm's counting and ETA, printed as whole lines at 0, 25, 50, 75 and 100%."""

    def __init__(self, *args, **kwargs):
        self._shown = -1
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        if self.disable:
            return True
        done = bool(self.total) and self.n >= self.total
        step = QUARTERS + 1 if done else (int(QUARTERS * self.n / self.total) if self.total else 0)
        if step == self._shown:
            return True
        self._shown = step
        fields = self.format_dict
        rate = fields.get("rate")
        line = f"{self.desc + ': ' if self.desc else ''}{self.n}/{self.total} {self.unit}"
        if rate:
            line += f" ({rate:.1f} {self.unit}/s)"
        self.fp.write(line + "\n")
        self.fp.flush()
        return True

    def update(self, n=1):
        shown = super().update(n)
        self.display()  # tqdm only redraws every mininterval; a quarter is printed whenever reached
        return shown

    def close(self):
        if self.disable:
            return
        if self._shown != QUARTERS + 1:
            if self.total and self.n >= self.total:
                self.display()
            else:  # stopped early: say where
                self.fp.write(f"{self.desc + ': ' if self.desc else ''}{self.n}/{self.total} {self.unit} (stopped)\n")
        self.sp = None  # tqdm's own close then only forgets the bar instead of drawing it once more
        super().close()


def bar(*args, **kwargs):
    """A tqdm bar (same arguments) on a terminal; PlainLines on a file or a pipe."""
    stream = kwargs.get("file") or sys.stderr
    kwargs["file"] = stream
    if _is_terminal(stream):
        return tqdm(*args, **kwargs)
    kwargs.pop("dynamic_ncols", None)
    return PlainLines(*args, **kwargs)
