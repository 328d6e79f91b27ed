"""Owns the lock of a run folder: one process at a time works in runs/<name>/.

The lock is `runs/<name>/.lock`, held with flock(2) for as long as the stage runs and holding
the owner's PID. The kernel drops the lock when its process ends, however it ends (SIGKILL
included), so a stale file never blocks: only a live holder does, and the second process is
told "run folder in use by PID n" before it touches anything.
"""
import contextlib
import fcntl
import os
from pathlib import Path

LOCK_NAME = ".lock"


class RunFolderBusy(RuntimeError):
    pass


@contextlib.contextmanager
def run_folder_lock(run_dir):
    """Hold run_dir's lock for the `with` block; RunFolderBusy when another process has it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RunFolderBusy(f"run folder {run_dir} in use by PID {holder}; wait for it to finish "
                                f"or stop it, or use another RUN") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the flock
