"""Owns Caffe's snapshot files: which ones a `caffe train` run wrote, and whether one is whole.

Caffe logs every file it writes (`Snapshotting to binary proto file X.caffemodel`, then
`Snapshotting solver state to binary proto file X.solverstate`), so the training driver knows
which snapshots are this run's own, whatever else lies in snapshots/. A file is only used
once it has been checked here: parsed with caffe_pb2, and for a solver state, its weights file
present and whole and its history blobs matching those weights' blobs (a `.solverstate` cut
short by a full disk otherwise makes Caffe abort with `state.history_size() == history_.size()`).
"""
import re
from pathlib import Path

SNAPSHOT_LINE = re.compile(r"Snapshotting (?:solver state )?to binary proto file (\S+)")
ITERATION = re.compile(r"_iter_(\d+)\.(caffemodel|solverstate)$")


class SnapshotError(ValueError):
    """A snapshot file that must not be used; the message names it and says why."""


def written_by(line):
    """The snapshot path a Caffe log line announces, or None."""
    match = SNAPSHOT_LINE.search(line)
    return match.group(1) if match else None


def iteration(path):
    match = ITERATION.search(Path(path).name)
    return int(match.group(1)) if match else -1


def blob_shape(blob):
    """A BlobProto's shape, new style (`shape.dim`) or legacy (num, channels, height, width)."""
    if blob.HasField("shape"):
        return tuple(blob.shape.dim)
    return tuple(d for d in (blob.num, blob.channels, blob.height, blob.width))


def _parse(path, message, what):
    from google.protobuf.message import DecodeError

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read ({exc.strerror})") from None
    if not data:
        raise SnapshotError(f"{path}: empty file, not a {what}")
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:  # RuntimeError: the C++ protobuf backend
        raise SnapshotError(f"{path}: not a whole {what} (truncated or not Caffe's: {exc})") from None
    return message


def weight_blobs(path):
    """[(layer name, [blob shapes])] of a .caffemodel, layers with blobs only; SnapshotError
    when it is not a whole Caffe weights file."""
    from caffe.proto import caffe_pb2

    net = _parse(path, caffe_pb2.NetParameter(), "Caffe weights file (.caffemodel)")
    layers = [(layer.name, [blob_shape(b) for b in layer.blobs]) for layer in list(net.layer) + list(net.layers)]
    layers = [(name, shapes) for name, shapes in layers if shapes]
    if not layers:
        raise SnapshotError(f"{path}: holds no weights (truncated, or not a .caffemodel)")
    for name, shapes in layers:
        if any(not shape or 0 in shape for shape in shapes):
            raise SnapshotError(f"{path}: layer {name} has an empty blob (truncated?)")
    return layers


def check_weights(path):
    """Raises SnapshotError unless `path` is a whole .caffemodel; returns its blob count."""
    return sum(len(shapes) for _, shapes in weight_blobs(path))


def check_solverstate(path):
    """Raises SnapshotError unless `path` is a whole .solverstate whose weights file is there
    and whole; returns the weights file's path."""
    from caffe.proto import caffe_pb2

    path = Path(path)
    state = _parse(path, caffe_pb2.SolverState(), "Caffe solver state (.solverstate)")
    if not state.learned_net:
        raise SnapshotError(f"{path}: names no weights file (truncated?)")
    weights = Path(state.learned_net)
    if not weights.is_absolute():
        weights = path.parent / weights
    if not weights.exists():
        raise SnapshotError(f"{path}: its weights file {weights} is missing")
    shapes = [s for _, layer_shapes in weight_blobs(weights) for s in layer_shapes]
    history = [blob_shape(b) for b in state.history]
    # SGD/Nesterov/AdaGrad keep one history blob per parameter blob, Adam/AdaDelta two.
    if not history or len(history) % len(shapes) or history[:len(shapes)] != shapes:
        raise SnapshotError(f"{path}: {len(history)} history blobs for the {len(shapes)} weight blobs of "
                            f"{weights.name} (truncated, e.g. by a full disk)")
    if any(len(b.data) + len(b.double_data) != _size(blob_shape(b)) for b in state.history):
        raise SnapshotError(f"{path}: a history blob is cut short (truncated, e.g. by a full disk)")
    return weights


def _size(shape):
    total = 1
    for d in shape:
        total *= d
    return total


def newest_whole_solverstate(candidates, echo=print):
    """The newest of `candidates` (paths) that `check_solverstate` accepts, or None; each one
    passed over is named with its reason."""
    for path in sorted({Path(p) for p in candidates}, key=iteration, reverse=True):
        try:
            check_solverstate(path)
            return path
        except SnapshotError as exc:
            echo(f"not resuming from it: {exc}")
    return None
