"""Owns checking what the user gave before any work starts, and saying what went wrong with
the disk in one line: run names, the workflow's numeric options, the GPU choice (against what
this Caffe build and machine have), output folders that must be writable, and OSErrors (full
disk, read-only folder) turned into "no space left on <path>" / "cannot write <path>".

Each check returns a message naming the option (its make variable and command-line flag) and
what to do, or '' when the value is fine; the callers turn it into exit status 2.
"""
import errno
import os
import re
import tempfile
from pathlib import Path

# (settings field, make variable, command-line flag, smallest value allowed, why)
_MINIMUMS = (
    ("input_size", "SIZE", "--input-size", 16, "four stride-2 stages need 16 px or more"),
    ("synthetic_count", "COUNT", "--count", 10, "the synthetic split needs train and test images"),
    ("limit", "LIMIT", "--limit", 0, "0 uses every image"),
    ("seed", "SEED", "--seed", 0, "a seed is a non-negative integer"),
)


def run_name_problem(name):
    """Why `name` cannot name a run folder under runs/, or ''."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        return (f"RUN (--run) must be a plain folder name under runs/ (no path separator, not starting "
                f"with '.'), got {name!r}")
    return ""


def settings_problems(settings):
    """Messages for every workflow setting out of range ([] when all are fine)."""
    problems = []
    for field, variable, flag, minimum, why in _MINIMUMS:
        value = getattr(settings, field)
        if not isinstance(value, int) or value < minimum:
            problems.append(f"{variable} ({flag}) must be at least {minimum} ({why}), got {value!r}")
    if not (settings.thresh > 0):  # NaN fails too; 0 would drop every training crop
        problems.append(f"THRESH (--thresh) must be above 0 (level-1 error above which training crops are "
                        f"dropped; inf keeps all), got {settings.thresh}")
    problem = run_name_problem(settings.run)
    if problem:
        problems.append(problem)
    return problems


def gpu_problem(gpu, available=None):
    """Why `gpu` ("" or None: CPU; "0", "0,1" or "all") cannot be trained on here, or ''.
    available: how many GPUs this Caffe build sees (default: asks caffe_runtime)."""
    from landmarks.common import caffe_runtime

    if not gpu:
        return ""
    if gpu != "all" and not re.fullmatch(r"\d+(,\d+)*", gpu):
        return f"GPU must be a device id, a comma-separated list or 'all', got {gpu!r}"
    available = caffe_runtime.gpu_count() if available is None else available
    if available == 0:
        try:
            build = caffe_runtime.build_info()["mode"]
        except caffe_runtime.CaffeNotBuilt:
            build = "not built"
        return (f"GPU={gpu} asked for, but this Caffe build or machine has no GPU (build: {build}); "
                "leave GPU empty for CPU")
    if gpu != "all" and max(int(g) for g in gpu.split(",")) >= available:
        return f"GPU={gpu}: this machine shows {available} GPU(s)"
    return ""


def _existing_parent(path):
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable_problem(folder):
    """Why files cannot be created in `folder` (made if missing), or ''. Tries for real: a
    permission check would be wrong for root and for read-only mounts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return disk_message(exc, folder if folder.exists() else _existing_parent(folder))
    return ""


_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)
# How libraries that wrap the C calls (h5py's RuntimeError, lmdb.Error) spell them.
_DISK_TEXTS = (("No space left on device", errno.ENOSPC), ("File too large", errno.EFBIG),
               ("Read-only file system", errno.EROFS), ("Permission denied", errno.EACCES))


def disk_errno(exc):
    """The errno of a full-disk / not-writable failure behind `exc` (an OSError, or a library's
    own exception whose text carries it), or None when `exc` is something else."""
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        return exc.errno
    text = str(exc)
    match = re.search(r"errno = (\d+)", text)
    if match and int(match.group(1)) in _DISK_ERRNOS:
        return int(match.group(1))
    return next((code for words, code in _DISK_TEXTS if words in text), None)


def is_disk_error(exc):
    return disk_errno(exc) is not None


def disk_message(exc, path=None):
    """One line for a failure from writing: "no space left on <path>" or "cannot write <path>"."""
    where = path or getattr(exc, "filename", None) or "the output folder"
    code = disk_errno(exc)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on {where}: free some space and run again (partial files were removed)"
    if code == errno.EFBIG:
        return f"no space left on {where} (file size limit reached): free space or raise the limit and run again"
    if code == errno.EROFS:
        return f"cannot write {where}: read-only file system"
    if code in (errno.EACCES, errno.EPERM):
        return f"cannot write {where}: permission denied"
    return f"cannot write {where}: {getattr(exc, 'strerror', None) or exc}"
