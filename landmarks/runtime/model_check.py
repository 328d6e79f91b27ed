"""Owns checking a deploy prototxt and its caffemodel in Python before pycaffe sees them.

pycaffe aborts the whole process (exit 134, a glog stack) on a prototxt syntax error, a
truncated or random-bytes caffemodel, an unknown layer type or a blob of the wrong shape, and
silently keeps random weights for a layer the caffemodel does not name. `check_model` parses
both files with caffe_pb2, checks the net's wiring and layer types, and compares every
parameter blob with the caffemodel's, raising `ModelFileError` with one line naming the file
and the layer. Every tool that loads nets calls it (through `landmarks.runtime.inference`).
"""
import tempfile
from pathlib import Path

from landmarks.common.protoio import with_input_layers, write_prototxt
from landmarks.train.snapshots import SnapshotError, weight_blobs


class ModelFileError(FileNotFoundError):
    """A model file that cannot be used (a FileNotFoundError, so the tools' existing handling
    of a missing file also catches it); the message names the file and what is wrong."""


def read_deploy(deploy):
    """The deploy prototxt as a NetParameter; ModelFileError with the line on a syntax error."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    deploy = Path(deploy)
    if not deploy.is_file():
        raise ModelFileError(f"{deploy}: no such file")
    try:
        text = deploy.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{deploy}: cannot read as a prototxt ({exc})") from None
    net = caffe_pb2.NetParameter()
    try:
        text_format.Merge(text, net)
    except text_format.ParseError as exc:
        raise ModelFileError(f"{deploy}:{exc} (prototxt syntax error)") from None
    if not net.layer:
        raise ModelFileError(f"{deploy}: no layers (not a deploy prototxt?)")
    return net


def _check_wiring(deploy, net):
    import caffe

    known = set(caffe.layer_type_list())
    tops = set(net.input)
    for layer in net.layer:
        if layer.type not in known:
            raise ModelFileError(f"{deploy}: layer {layer.name} has type {layer.type!r}, which this Caffe build "
                                 "does not know")
        for bottom in layer.bottom:
            if bottom not in tops:
                raise ModelFileError(f"{deploy}: layer {layer.name} reads {bottom!r}, which no earlier layer makes")
        tops.update(layer.top)


def _expected_shapes(net):
    """{layer: [blob shapes]} of the deploy net's parameters, from Caffe's own shape inference
    (old-style inputs as Input layers: the same net, without Caffe's upgrade warning)."""
    import caffe

    with tempfile.TemporaryDirectory() as tmp:
        path = write_prototxt(with_input_layers(net), Path(tmp) / "deploy.prototxt")
        net = caffe.Net(str(path), caffe.TEST)
    return {name: [tuple(b.data.shape) for b in blobs] for name, blobs in net.params.items()}


def _same(stored, needed):
    """Caffe's rule: equal shapes, or a legacy 4-d blob (num, channels, height, width) whose
    shape is the needed one padded with leading 1s."""
    strip = lambda shape: tuple(shape[next((i for i, d in enumerate(shape) if d != 1), len(shape)):])
    return tuple(stored) == tuple(needed) or (len(stored) == 4 and strip(stored) == strip(needed))


def check_model(deploy, weights):
    """Raises ModelFileError unless the deploy prototxt parses, is wired and typed for this
    Caffe, and `weights` is a whole caffemodel holding every parameter blob it needs, with
    the same shapes."""
    net = read_deploy(deploy)
    weights = Path(weights)
    if not weights.is_file():
        raise ModelFileError(f"{weights}: no such file")
    try:
        stored = dict(weight_blobs(weights))
    except SnapshotError as exc:
        raise ModelFileError(str(exc)) from None
    _check_wiring(deploy, net)
    for layer, shapes in _expected_shapes(net).items():
        have = stored.get(layer)
        if have is None:
            raise ModelFileError(f"{weights}: no weights for layer {layer} of {Path(deploy).name} "
                                 "(weights of another net?)")
        if len(have) < len(shapes) or not all(_same(a, b) for a, b in zip(have, shapes)):
            raise ModelFileError(f"{weights}: layer {layer} holds blobs {have}, {Path(deploy).name} needs {shapes} "
                                 "(weights of another net, or another input size?)")


def check_model_files(*paths):
    """FileNotFoundError naming the first of a model's files that is not there."""
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file")


def check_caffe_model(deploy, weights):
    """check_model_files, then what pycaffe would abort on (check_model), as a
    FileNotFoundError naming the file."""
    check_model_files(deploy, weights)
    check_model(deploy, weights)
