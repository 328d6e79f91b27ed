"""Owns writing a file so that it is never seen half-written: the text (or bytes) goes to a temporary
name beside the target (its folder is created if needed), which is then renamed over it."""
import json
import os


def write_text(path, text):
    """Write `text` (UTF-8) to `path` through a temporary name; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_bytes(path, data):
    """Write `data` (bytes) to `path` through a temporary name; returns the path."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path, data, indent=2):
    """`data` as indented JSON with a final newline, written as `write_text` does."""
    return write_text(path, json.dumps(data, indent=indent) + "\n")
