"""Owns `manifest.json`: the record of a finished build, and deciding whether a rerun can reuse it.

A build's key is a hash of everything its output depends on: the level, the options that
change samples (not --workers), the data_prep format version, and the SHA-256 of its input
text files (landmarks, partition, predictions). Image files are not hashed (202,599 of them):
the key holds the image folder's state instead (its path, permission bits and modification
time: adding, removing or renaming images, or a chmod, makes a new key); replacing images in
place needs `--force`.
The manifest is written last and atomically, so its presence marks a complete build. A data
folder that was moved or copied is not current: its HDF5 list files name the old place.
"""
import datetime
import hashlib
import json
import os

from landmarks.common.atomic import write_json

MANIFEST = "manifest.json"
FORMAT_VERSION = 1  # bump when the written samples change for the same inputs and options


def sha256_file(path, block=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_state(path):
    """What the key holds of a folder that is not hashed: path, permission bits, mtime."""
    st = os.stat(path)
    return {"path": os.path.abspath(path), "mode": oct(st.st_mode & 0o7777), "mtime_ns": st.st_mtime_ns}


def build_key(level, options, input_files, folders=None):
    """(key, {role: {path, sha256} or folder_state}) for the options, the input files
    ({role: path or ''}) and the folders whose state counts ({role: path})."""
    inputs = {role: {"path": os.path.abspath(path), "sha256": sha256_file(path)}
              for role, path in sorted(input_files.items()) if path}
    inputs.update({role: folder_state(path) for role, path in sorted((folders or {}).items()) if path})
    payload = json.dumps({"format_version": FORMAT_VERSION, "level": level, "options": options,
                          "inputs": {role: v.get("sha256", v) for role, v in inputs.items()}}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest(), inputs


def load(out_dir):
    path = os.path.join(out_dir, MANIFEST)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def is_current(out_dir, key):
    """True when DIR holds a finished build with this key whose outputs are all still there
    with their recorded sizes (sizes, not checksums: checking must cost nothing)."""
    manifest = load(out_dir)
    if not manifest or manifest.get("key") != key:
        return False
    for rel, info in manifest.get("outputs", {}).items():
        path = os.path.join(out_dir, rel)
        if not os.path.isfile(path) or os.path.getsize(path) != info.get("bytes"):
            return False
    return lists_point_inside(out_dir)


def lists_point_inside(out_dir):
    """Whether every shard path in DIR/hdf5/*.txt (absolute: Caffe reads them as given) lies
    in DIR: a data folder copied or moved elsewhere would still read the original's shards."""
    folder = os.path.join(os.path.abspath(out_dir), "")
    lists = os.path.join(out_dir, "hdf5")
    for name in (os.listdir(lists) if os.path.isdir(lists) else ()):
        if name.endswith(".txt"):
            with open(os.path.join(lists, name), encoding="utf-8") as fh:
                if any(line.strip() and not line.strip().startswith(folder) for line in fh):
                    return False
    return True


def output_records(out_dir, relpaths):
    """{relative path: {bytes, sha256}} of the written files (lock files are not data)."""
    records = {}
    for rel in relpaths:
        if os.path.basename(rel) == "lock.mdb":
            continue  # rewritten by every reader that opens the LMDB
        path = os.path.join(out_dir, rel)
        records[rel] = {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}
    return records


def write(out_dir, manifest):
    """Write DIR/manifest.json atomically."""
    manifest = dict(manifest, written=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    write_json(os.path.join(out_dir, MANIFEST), manifest, indent=1)
