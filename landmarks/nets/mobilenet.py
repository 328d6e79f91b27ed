"""Owns the network: the article's 48x48 MobileNet-V2 as Caffe NetParameters, from one code path.

`train_test_net` (data layers for both phases, EuclideanLoss) and `deploy_net` (an Input of
1 x 3 x S x S, no data or loss layers) both call `_body`, so the two can never disagree.
A level differs from the other only by its name and its data; the structure is `NetConfig`.
"""
import os
from dataclasses import dataclass, replace

import caffe
from caffe import layers as L
from caffe import params as P

from landmarks.conventions.images import MEAN_VALUE  # the one owner of the input convention

DEPTHWISE_CHOICES = ("layer", "group")
LOSS_CHOICES = ("euclidean", "wing")
SOURCE_CHOICES = ("hdf5", "lmdb")


@dataclass(frozen=True)
class NetConfig:
    input_size: int = 48
    points: int = 5
    depthwise: str = "layer"  # "layer": our ConvolutionDepthwise; "group": stock Convolution
    stem_channels: int = 16
    # (output channels, stride of the first repeat, expansion t of each repeat).
    # The released model's last block expands 64 -> 192 (t=3, not 6): keeping that is what
    # makes the deploy net hold exactly the released 242,189 values.
    stages: tuple = ((24, 2, (6, 6)), (32, 2, (6, 6)), (64, 2, (6, 3)))
    fc_hidden: int = 256
    dropout: float = 0.3
    loss_weight: float = 100.0
    # "euclidean": the article's L2; "wing": caffe_ext's WingLoss (Feng et al. 2018), whose w
    # and epsilon are in label units (1 = half the input side): 0.3 and 0.06 are Feng et al.'s
    # 10 and 2 pixels of a 64-pixel input, scaled to ours.
    loss: str = "euclidean"
    wing_w: float = 0.3
    wing_epsilon: float = 0.06

    def __post_init__(self):
        if self.depthwise not in DEPTHWISE_CHOICES:
            raise ValueError(f"depthwise must be one of {DEPTHWISE_CHOICES}, got {self.depthwise!r}")
        if self.loss not in LOSS_CHOICES:
            raise ValueError(f"loss must be one of {LOSS_CHOICES}, got {self.loss!r}")
        if self.input_size < 16:
            # four stride-2 stages: 16 px leaves a 1x1 map before fc1
            raise ValueError(f"input_size must be at least 16, got {self.input_size}")
        if self.points < 1:
            raise ValueError("points must be at least 1")


# Parameter specs, named once. Frozen BatchNorm blobs: Caffe updates its running statistics
# itself; a solver step on them would corrupt them.
CONV_PARAM = [dict(lr_mult=1, decay_mult=1)]
DEPTHWISE_PARAM = [dict(lr_mult=1, decay_mult=0)]  # as released: no decay on 9-tap filters
BN_PARAM = [dict(lr_mult=0, decay_mult=0)] * 3
FC_PARAM = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=1)]


def _conv_bn(n, name, bottom, channels, kernel, stride, relu, depthwise=None):
    """Convolution (no bias) + BatchNorm + Scale [+ ReLU]; returns the top.
    `depthwise` is None for a dense conv, else "layer" or "group"."""
    conv_param = dict(num_output=channels, kernel_size=kernel, stride=stride, pad=kernel // 2,
                      bias_term=False, weight_filler=dict(type="msra"))
    if depthwise == "layer":
        top = L.ConvolutionDepthwise(bottom, param=DEPTHWISE_PARAM, convolution_param=conv_param)
    elif depthwise == "group":
        top = L.Convolution(bottom, param=DEPTHWISE_PARAM, convolution_param=dict(conv_param, group=channels))
    else:
        top = L.Convolution(bottom, param=CONV_PARAM, convolution_param=conv_param)
    n[name] = top
    n[f"{name}/bn"] = L.BatchNorm(top, param=BN_PARAM, in_place=True)
    n[f"{name}/scale"] = L.Scale(top, scale_param=dict(bias_term=True, filler=dict(value=1),
                                                        bias_filler=dict(value=0)), in_place=True)
    if relu:
        n[f"{name}/relu"] = L.ReLU(top, in_place=True)
    return top


def _bottleneck(n, name, bottom, c_in, c_out, stride, t, depthwise):
    """1x1 expand (ReLU) -> 3x3 depthwise (ReLU) -> 1x1 linear projection [+ residual]."""
    expanded = t * c_in
    top = _conv_bn(n, f"{name}/expand", bottom, expanded, 1, 1, relu=True)
    top = _conv_bn(n, f"{name}/dwise", top, expanded, 3, stride, relu=True, depthwise=depthwise)
    top = _conv_bn(n, f"{name}/project", top, c_out, 1, 1, relu=False)
    if stride == 1 and c_in == c_out:
        n[f"{name}/add"] = top = L.Eltwise(bottom, top, eltwise_param=dict(operation=P.Eltwise.SUM))
    return top


def _body(n, data, cfg):
    """Everything between the input and fc2; returns fc2's top."""
    top = _conv_bn(n, "conv1", data, cfg.stem_channels, 3, 2, relu=True)
    c_in = cfg.stem_channels
    for stage_index, (c_out, stride, expansions) in enumerate(cfg.stages, start=2):
        for repeat, t in enumerate(expansions, start=1):
            top = _bottleneck(n, f"block{stage_index}_{repeat}", top, c_in, c_out,
                              stride if repeat == 1 else 1, t, cfg.depthwise)
            c_in = c_out
    fc_filler = dict(weight_filler=dict(type="gaussian", std=0.01), bias_filler=dict(type="constant", value=0))
    n.fc1 = L.InnerProduct(top, param=FC_PARAM, inner_product_param=dict(num_output=cfg.fc_hidden, **fc_filler))
    n["fc1/relu"] = L.ReLU(n.fc1, in_place=True)
    n["fc1/dropout"] = L.Dropout(n.fc1, dropout_param=dict(dropout_ratio=cfg.dropout), in_place=True)
    n.fc2 = L.InnerProduct(n.fc1, param=FC_PARAM, inner_product_param=dict(num_output=2 * cfg.points, **fc_filler))
    return n.fc2


def data_sources(source, data_dir, split):
    """The paths the data layers read for one split of a data folder written by data_prep
    (`DIR/hdf5/{split}.txt`, or `DIR/lmdb/{split}_images` and `DIR/lmdb/{split}_labels`)."""
    if source == "hdf5":
        return (os.path.join(data_dir, "hdf5", f"{split}.txt"),)
    if source == "lmdb":
        return (os.path.join(data_dir, "lmdb", f"{split}_images"), os.path.join(data_dir, "lmdb", f"{split}_labels"))
    raise ValueError(f"source must be one of {SOURCE_CHOICES}, got {source!r}")


def _data_layers(n, source, paths, batch_size, phase):
    include = dict(phase=phase)
    if source == "hdf5":
        # HDF5Data shuffles only within a file; data_prep shuffled the training order already.
        n.data, n.label = L.HDF5Data(ntop=2, include=include, hdf5_data_param=dict(
            source=paths[0], batch_size=batch_size, shuffle=phase == caffe.TRAIN))
    else:
        # Two Data layers over LMDBs with identical keys read in step: images (uint8, the
        # mean subtracted here) and labels (float_data, no transform).
        n.data = L.Data(include=include, transform_param=dict(mean_value=[MEAN_VALUE] * 3),
                        data_param=dict(source=paths[0], backend=P.Data.LMDB, batch_size=batch_size))
        n.label = L.Data(include=include, data_param=dict(source=paths[1], backend=P.Data.LMDB,
                                                          batch_size=batch_size))


def train_test_net(cfg, source, train_paths, test_paths, batch_train, batch_test, name):
    """The train/test NetParameter: data layers for TRAIN and TEST, the body, the loss."""
    if source not in SOURCE_CHOICES:
        raise ValueError(f"source must be one of {SOURCE_CHOICES}, got {source!r}")
    train = caffe.NetSpec()
    _data_layers(train, source, train_paths, batch_train, caffe.TRAIN)
    fc2 = _body(train, train.data, cfg)
    if cfg.loss == "wing":
        train.loss = L.WingLoss(fc2, train.label, loss_weight=cfg.loss_weight,
                                wing_loss_param=dict(w=cfg.wing_w, epsilon=cfg.wing_epsilon))
    else:
        train.loss = L.EuclideanLoss(fc2, train.label, loss_weight=cfg.loss_weight)
    test = caffe.NetSpec()
    _data_layers(test, source, test_paths, batch_test, caffe.TEST)
    net = train.to_proto()
    test_layers = test.to_proto().layer
    data_count = 1 if source == "hdf5" else 2
    # Caffe wants both phases' data layers (same tops) at the head of one file.
    merged = list(net.layer[:data_count]) + list(test_layers) + list(net.layer[data_count:])
    del net.layer[:]
    net.layer.extend(merged)
    net.name = name
    return net


def deploy_net(cfg, name, batch=1):
    """The deploy NetParameter: Input of batch x 3 x S x S, the body, fc2 as the output."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[batch, 3, cfg.input_size, cfg.input_size]))
    _body(n, n.data, cfg)
    net = n.to_proto()
    net.name = name
    return net



def depthwise_shapes(cfg, name="level"):
    """(C, H, W, kernel, stride, pad) at the input of each depthwise layer of the deploy net,
    read off the net Caffe builds from it (so no second copy of the structure lives here)."""
    import tempfile

    from landmarks.common.protoio import write_prototxt

    param = deploy_net(replace(cfg, depthwise="layer"), name)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "deploy.prototxt")
        write_prototxt(param, path)
        net = caffe.Net(path, caffe.TEST)
    shapes = []
    for layer in param.layer:
        if layer.type == "ConvolutionDepthwise":
            _, c, h, w = net.blobs[layer.bottom[0]].data.shape
            conv = layer.convolution_param
            shapes.append((c, h, w, conv.kernel_size[0], conv.stride[0] if conv.stride else 1,
                           conv.pad[0] if conv.pad else 0))
    return shapes
