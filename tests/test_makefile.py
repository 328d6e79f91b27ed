"""The Makefile hands every user variable to the shell as one word (issue 23): a value holding
`;`, quotes, backticks or spaces reaches the command as itself and runs nothing. Make runs its
real recipes here, with `setup` taken as done (-o) and PY a script that prints its arguments."""
import shutil
import subprocess
import sys

import pytest

from support import ROOT

# ; ends a command, ' and " end a quoted word, ` runs one inside double quotes, a space splits
PAYLOAD = "zz;echo INJECTED;false 'q' \"d\" `echo INJECTED`"
VARIABLES = ("RUN", "DATA", "DATASET", "SCHEDULE", "GPU", "DEPTHWISE", "FORMAT", "THRESH", "SIZE", "COUNT", "SEED",
             "LIMIT", "AUG", "CROPS", "LOSS", "ITERS", "IMAGES", "MTFL")
TARGETS = ("data", "level1", "crops", "level2", "demo", "export", "timing", "report", "test")
ARGV = '#!/bin/sh\nfor a in "$@"; do printf "[%s]\\n" "$a"; done\n'

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make here")


def _make(*args, py):
    return subprocess.run(["make", "-s", "-o", "setup", "-o", "cuda-build", f"PY={py}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def argv_printer(tmp_path):
    script = tmp_path / "argv.sh"
    script.write_text(ARGV)
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("target", TARGETS)
def test_every_variable_reaches_the_command_as_one_word(target, argv_printer):
    proc = _make(target, *(f"{name}={PAYLOAD}" for name in VARIABLES), py=argv_printer)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "INJECTED" not in lines and "INJECTED" not in proc.stderr, proc.stdout
    assert lines and all(line.startswith("[") and line.endswith("]") for line in lines), proc.stdout
    if target != "test":  # pytest's arguments are PYTEST_ARGS, split into words on purpose
        assert f"[{PAYLOAD}]" in lines or f"[runs/{PAYLOAD}]" in lines, proc.stdout


def test_an_injected_run_name_runs_nothing_in_a_real_target(tmp_path):
    """`make report 'RUN=zz;echo INJECTED;false'` with the real Python: the run name reaches
    tools/run.py whole and is refused there in one line; no `echo` or `touch` runs."""
    name = f"zz;echo INJECTED;touch {tmp_path}/injected;false"
    proc = _make("report", f"RUN={name}", py=sys.executable)
    assert proc.returncode != 0
    assert "INJECTED" not in proc.stdout.splitlines() and not (tmp_path / "injected").exists()
    assert proc.stderr.startswith("error: RUN (--run) must be a plain folder name") and name in proc.stderr
