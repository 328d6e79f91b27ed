"""Progress output: a few plain lines when the stream is not a terminal (issue 11)."""
import io

from landmarks.common import progress


def test_a_file_gets_a_few_whole_lines_not_one_endless_one():
    out = io.StringIO()
    with progress.bar(total=10_000, desc="predict", unit="img", file=out) as bar:
        for _ in range(10_000):
            bar.update(1)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert [line.split(" ")[1] for line in lines] == ["0/10000", "2500/10000", "5000/10000", "7500/10000", "10000/10000"]
    assert len(text) < 400


def test_a_stop_says_where_and_disable_prints_nothing():
    out = io.StringIO()
    bar = progress.bar(total=100, desc="level 1", unit="img", file=out)
    bar.update(10)
    bar.close()
    assert out.getvalue().splitlines()[-1] == "level 1: 10/100 img (stopped)"
    quiet = io.StringIO()
    with progress.bar(total=5, file=quiet, disable=True) as bar:
        bar.update(5)
    assert quiet.getvalue() == ""


def test_one_big_step_prints_the_end_once():
    out = io.StringIO()
    with progress.bar(total=60, desc="level 2", unit="img", file=out) as bar:
        bar.update(60)
    assert [line.split(" (")[0] for line in out.getvalue().splitlines()] == ["level 2: 0/60 img", "level 2: 60/60 img"]
