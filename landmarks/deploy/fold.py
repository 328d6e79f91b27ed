"""Owns the portable Caffe model: a deploy prototxt + caffemodel rewritten so that stock Caffe
and OpenCV's dnn load it and it computes the same outputs with fewer layers.

- Every BatchNorm (and the Scale after it) is folded into the convolution before it: with
  Caffe's stored running sums m, v and moving-average factor f, the layer computes
  (x - m*k) / sqrt(v*k + eps) with k = 1/f, and k = 0 when f == 0 (Caffe's own rule in
  batch_norm_layer.cpp and in our fast layer: a factor of 0 zeroes the statistics, it does
  not mean "no scaling"). Scale multiplies by gamma and adds beta. So the convolution's
  weights are multiplied per output channel by a = gamma / sqrt(v*k + eps) and it gets the
  bias (b - m*k) * a + beta.
- Dropout (the identity at test time) is removed.
- `ConvolutionDepthwise` (ours and the released models') becomes stock `Convolution` with
  `group: num_output`: the same C x 1 x k x k weights.
A BatchNorm whose input is not a convolution's output read by it alone is left in place
(stock Caffe and OpenCV know BatchNorm and Scale); `fold_model` says how many it folded.

Models are read and written with caffe_pb2 alone (no net is instantiated), in float64
arithmetic, stored as float32.
"""
from dataclasses import dataclass, field

import numpy as np
from google.protobuf import text_format

from landmarks.common.atomic import write_bytes, write_text
from landmarks.common.protoio import DEPTHWISE_TYPE, ModelError, read_net

CONVOLUTIONS = ("Convolution", DEPTHWISE_TYPE)


def _caffe_pb2():
    from caffe.proto import caffe_pb2

    return caffe_pb2


def blob_array(blob):
    """A BlobProto as a float64 numpy array of its shape (new `shape` or legacy 4-d fields)."""
    dims = list(blob.shape.dim) if blob.HasField("shape") else [blob.num, blob.channels, blob.height, blob.width]
    values = np.array(blob.double_data if len(blob.double_data) else blob.data, dtype=np.float64)
    if values.size != int(np.prod(dims)):
        values = values.reshape(-1)  # legacy blobs with unset leading dims: trust the data
        return values
    return values.reshape(dims)


def array_blob(array):
    blob = _caffe_pb2().BlobProto()
    blob.shape.dim.extend(int(d) for d in array.shape)
    blob.data.extend(np.asarray(array, dtype=np.float32).reshape(-1).tolist())
    return blob


def read_weights(weights):
    """{layer name: [float64 arrays]} of a caffemodel."""
    caffe_pb2 = _caffe_pb2()
    try:
        data = open(weights, "rb").read()
    except FileNotFoundError:
        raise ModelError(f"{weights}: no such file") from None
    stored = caffe_pb2.NetParameter()
    try:
        stored.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise ModelError(f"{weights}: not a caffemodel ({exc})") from None
    layers = list(stored.layer) + list(stored.layers)
    params = {layer.name: [blob_array(b) for b in layer.blobs] for layer in layers if layer.blobs}
    if not params:
        raise ModelError(f"{weights}: holds no weights")
    return params


@dataclass
class FoldReport:
    folded_batchnorm: int = 0
    folded_scale: int = 0
    dropped_dropout: int = 0
    depthwise_to_group: int = 0
    left_unfolded: list = field(default_factory=list)

    def as_dict(self):
        return dict(self.__dict__)


def _readers(layers):
    """For each layer index i and each of its tops, the indices of the layers that read that
    value (before the blob name is written again)."""
    readers = {}
    for i, layer in enumerate(layers):
        for top in layer.top:
            found = []
            for j in range(i + 1, len(layers)):
                if top in layers[j].bottom:
                    found.append(j)
                if top in layers[j].top:
                    break  # rewritten (in place or not): later readers see that value
            readers[(i, top)] = found
    return readers


def _bn_scale(layer, params):
    """(mean, var) of a BatchNorm layer with Caffe's factor rule."""
    mean, var, factor = params
    f = float(np.asarray(factor).reshape(-1)[0])
    k = 0.0 if f == 0 else 1.0 / f
    return mean.reshape(-1) * k, var.reshape(-1) * k


def fold(net, params):
    """(folded NetParameter, folded params, FoldReport) for a deploy NetParameter and its weights."""
    caffe_pb2 = _caffe_pb2()
    layers = [caffe_pb2.LayerParameter.FromString(l.SerializeToString()) for l in net.layer]
    params = {name: [np.array(a) for a in blobs] for name, blobs in params.items()}
    report = FoldReport()
    readers = _readers(layers)
    removed = set()
    for i, conv in enumerate(layers):
        if conv.type not in CONVOLUTIONS or len(conv.top) != 1 or conv.name not in params:
            continue
        chain = readers[(i, conv.top[0])]
        if len(chain) != 1 or layers[chain[0]].type != "BatchNorm":
            continue
        b = chain[0]
        bn = layers[b]
        if bn.batch_norm_param.HasField("use_global_stats") and not bn.batch_norm_param.use_global_stats:
            report.left_unfolded.append(f"{bn.name}: use_global_stats false")
            continue
        mean, var = _bn_scale(bn, params[bn.name])
        weights = params[conv.name][0]
        bias = params[conv.name][1].reshape(-1) if conv.convolution_param.bias_term else np.zeros(weights.shape[0])
        a = 1.0 / np.sqrt(var + bn.batch_norm_param.eps)
        shift = -mean * a
        last, end = b, bn.top[0]
        after = readers[(b, bn.top[0])]
        if len(after) == 1 and layers[after[0]].type == "Scale" and len(layers[after[0]].bottom) == 1:
            s = after[0]
            scale_params = params[layers[s].name]
            gamma = scale_params[0].reshape(-1)
            beta = scale_params[1].reshape(-1) if len(scale_params) > 1 else np.zeros_like(gamma)
            a, shift = a * gamma, shift * gamma + beta
            last, end = s, layers[s].top[0]
            report.folded_scale += 1
        # conv now writes `end`: nothing between it and the folded layers may touch that name
        if any(end in layers[j].bottom or end in layers[j].top for j in range(i + 1, last) if j != b):
            report.left_unfolded.append(f"{bn.name}: its output name is used between {conv.name} and it")
            continue
        params[conv.name] = [weights * a.reshape(-1, *([1] * (weights.ndim - 1))), bias * a + shift]
        conv.convolution_param.bias_term = True
        del conv.top[:]
        conv.top.append(end)
        removed.update({b, last})
        report.folded_batchnorm += 1
    renames = {}
    out = []
    for i, layer in enumerate(layers):
        if i in removed:
            params.pop(layer.name, None)
            continue
        for k, bottom in enumerate(layer.bottom):
            layer.bottom[k] = renames.get(bottom, bottom)
        if layer.type == "Dropout":
            if layer.top[0] != layer.bottom[0]:
                renames[layer.top[0]] = layer.bottom[0]
            report.dropped_dropout += 1
            continue
        for top in layer.top:
            renames.pop(top, None)
        if layer.type == DEPTHWISE_TYPE:
            layer.type = "Convolution"
            layer.convolution_param.group = layer.convolution_param.num_output
            report.depthwise_to_group += 1
        if layer.type == "Convolution":
            del layer.param[:]  # no learning-rate settings: this is a deploy file
            layer.convolution_param.ClearField("weight_filler")
            layer.convolution_param.ClearField("bias_filler")
        out.append(layer)
    report.left_unfolded += [l.name for l in out if l.type == "BatchNorm"]
    folded = caffe_pb2.NetParameter()
    folded.CopyFrom(net)
    del folded.layer[:]
    folded.layer.extend(out)
    return folded, params, report


def with_our_depthwise(net):
    """A copy of a folded net whose depthwise convolutions (group == num_output) are our
    `ConvolutionDepthwise` again: for our Caffe, where that layer is faster than the stock
    grouped convolution. Same weights (Caffe matches the caffemodel's blobs by layer name)."""
    ours = _caffe_pb2().NetParameter()
    ours.CopyFrom(net)
    for layer in ours.layer:
        p = layer.convolution_param
        if layer.type == "Convolution" and p.group > 1 and p.group == p.num_output:
            layer.type = DEPTHWISE_TYPE
            p.ClearField("group")
    return ours


def weights_message(net, params):
    """A caffemodel NetParameter: the deploy layers with their blobs, as Caffe's Net::ToProto writes."""
    caffe_pb2 = _caffe_pb2()
    stored = caffe_pb2.NetParameter()
    stored.name = net.name
    for layer in net.layer:
        saved = stored.layer.add()
        saved.CopyFrom(layer)
        for array in params.get(layer.name, []):
            saved.blobs.append(array_blob(array))
    return stored


def write_model(net, params, deploy_out, weights_out, source=""):
    """The folded deploy prototxt and caffemodel, each through a temporary name."""
    header = f"# Folded for deployment by landmarks.deploy.fold{f' from {source}' if source else ''}: do not edit.\n"
    write_text(deploy_out, header + text_format.MessageToString(net))
    write_bytes(weights_out, weights_message(net, params).SerializeToString())


def read_model(deploy, weights):
    """(NetParameter, params) of a deploy prototxt + caffemodel; ModelError naming the file
    when the caffemodel lacks weights for one of the prototxt's layers that needs them."""
    net = read_net(deploy)
    params = read_weights(weights)
    missing = [l.name for l in net.layer if l.type in CONVOLUTIONS + ("BatchNorm", "Scale", "InnerProduct")
               and l.name not in params]
    if missing:
        raise ModelError(f"{weights}: no weights for layer(s) {', '.join(missing[:5])} of {deploy}")
    return net, params


def fold_model(deploy, weights, deploy_out, weights_out, ours_out=None):
    """Reads a model, folds it, writes it (and, given ours_out, the prototxt of
    `with_our_depthwise`); returns the FoldReport as a dict."""
    net, params = read_model(deploy, weights)
    folded, folded_params, report = fold(net, params)
    write_model(folded, folded_params, deploy_out, weights_out, source=str(deploy))
    if ours_out:
        write_text(ours_out, f"# Folded by landmarks.deploy.fold from {deploy}, with our ConvolutionDepthwise (for our Caffe "
                             f"only; deploy.prototxt is the portable one): do not edit.\n"
                             + text_format.MessageToString(with_our_depthwise(folded)))
    return report.as_dict()
