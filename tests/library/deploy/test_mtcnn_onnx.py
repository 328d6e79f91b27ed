"""landmarks.deploy.mtcnn_onnx and onnx_export.graph_to_onnx: MTCNN's four Caffe nets converted to
ONNX agree with real Caffe on every output (P-Net at a size that is not a multiple of its stride,
so ceil-mode pooling and the free H and W are exercised), the conversion is cached by the Caffe
files' contents, layers ONNX cannot match are refused by name, and the detector finds the same
faces with the same points in ONNX Runtime as in our Caffe on real photographs."""
import shutil

import caffe
import cv2
import numpy as np
import pytest

from data_prep import readers
from landmarks.common.protoio import ModelError
from landmarks.deploy import mtcnn_onnx, onnx_export
from landmarks.runtime.backends import load_graph
from landmarks.runtime.mtcnn import MODEL_DIR
from support import MTFL, needs_mtfl


def test_the_converted_nets_agree_with_caffe_and_are_cached(tmp_path):
    folder = mtcnn_onnx.onnx_models(cache=tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["check.json", "det1.onnx", "det2.onnx", "det3.onnx", "det4.onnx"]
    record = mtcnn_onnx.check_record(folder)
    assert record["reference"] == "caffe"
    differences = [d for outputs in record["largest_difference"].values() for d in outputs.values()]
    assert len(differences) == 12 and max(differences) <= mtcnn_onnx.TOLERANCE
    # P-Net on a 3 x 50 x 41 image in both: the heat map's size is Caffe's (rounded up by the pooling)
    batch = np.random.default_rng(5).uniform(-1, 1, (1, 3, 50, 41)).astype(np.float32)
    want = load_graph("caffe", *mtcnn_onnx.net_files(MODEL_DIR)["pnet"]).run(batch, ("prob1", "conv4-2"))
    got = load_graph("onnxruntime", folder / "det1.onnx").run(batch, ("prob1", "conv4-2"))
    for a, b in zip(want, got):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5)
    stamp = (folder / "det1.onnx").stat().st_mtime_ns
    assert mtcnn_onnx.onnx_models(cache=tmp_path) == folder and (folder / "det1.onnx").stat().st_mtime_ns == stamp


def test_changed_caffe_files_get_a_new_conversion(tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(MODEL_DIR, copy)
    before = mtcnn_onnx.source_key(copy)
    with open(copy / "det1.prototxt", "a") as handle:
        handle.write("# edited\n")
    assert mtcnn_onnx.source_key(copy) != before
    (copy / "det3.caffemodel").unlink()
    with pytest.raises(FileNotFoundError, match="det3.caffemodel"):
        mtcnn_onnx.onnx_models(copy, cache=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def _tiny_net(tmp_path, layer):
    deploy = tmp_path / "net.prototxt"
    deploy.write_text('name: "tiny"\nlayer { name: "data" type: "Input" top: "data" '
                      'input_param { shape { dim: 1 dim: 2 dim: 7 dim: 7 } } }\n' + layer)
    weights = tmp_path / "net.caffemodel"
    caffe.Net(str(deploy), caffe.TEST).save(str(weights))
    return deploy, weights


CONV = ('layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
        'convolution_param { num_output: 2 kernel_size: 1 } }\n')


def test_layers_onnx_cannot_match_are_refused_by_name(tmp_path):
    deploy, weights = _tiny_net(tmp_path, CONV + 'layer { name: "norm" type: "LRN" bottom: "conv" top: "norm" }\n')
    with pytest.raises(ModelError, match="norm of type LRN"):
        onnx_export.graph_to_onnx(deploy, weights)
    deploy, weights = _tiny_net(tmp_path, CONV + 'layer { name: "avg" type: "Pooling" bottom: "conv" top: "avg" '
                                          'pooling_param { pool: AVE kernel_size: 3 stride: 2 } }\n')
    with pytest.raises(ModelError, match="avg: only MAX"):
        onnx_export.graph_to_onnx(deploy, weights)


def test_every_terminal_blob_is_an_output_under_its_caffe_name(tmp_path):
    deploy, weights = _tiny_net(tmp_path, """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "gaussian" std: 0.5 } } }
layer { name: "act" type: "PReLU" bottom: "conv" top: "conv" prelu_param { filler { type: "uniform" min: 0.1 max: 0.5 } } }
layer { name: "cut" type: "Slice" bottom: "conv" top: "a" top: "b" slice_param { axis: 1 slice_point: 1 } }
layer { type: "Softmax" bottom: "b" top: "prob" }
layer { name: "pool" type: "Pooling" bottom: "a" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
""")
    model = onnx_export.graph_to_onnx(deploy, weights)
    assert [o.name for o in model.graph.output] == ["prob", "pool"] and model.graph.input[0].name == "data"
    path = tmp_path / "net.onnx"
    path.write_bytes(model.SerializeToString())
    batch = np.random.default_rng(1).normal(size=(3, 2, 9, 11)).astype(np.float32)
    want = load_graph("caffe", deploy, weights).run(batch, ("prob", "pool"))
    got = load_graph("onnxruntime", path).run(batch, ("prob", "pool"))
    for a, b in zip(want, got):
        assert a.shape == b.shape  # the 7 x 9 map pooled 2 by 2, rounded up: 4 x 5
        np.testing.assert_allclose(a, b, atol=1e-5)


@needs_mtfl
def test_onnxruntime_finds_the_same_faces_as_our_caffe():
    data = readers.load(str(MTFL), seed=1)
    ours, theirs = mtcnn_onnx.detector("caffe", points="lnet"), mtcnn_onnx.detector("onnxruntime", points="lnet")
    assert theirs.backend == "onnxruntime"
    found = 0
    for entry in data.split("val")[:12]:
        image = cv2.imread(data.image_path(entry.name))
        image = cv2.copyMakeBorder(image, 80, 40, 120, 60, cv2.BORDER_REPLICATE)  # a face inside a larger photo
        a, b = ours.detect(image), theirs.detect(image)
        assert len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x.box, y.box, atol=1e-2)
            np.testing.assert_allclose(x.points, y.points, atol=1e-2)
            assert x.score == pytest.approx(y.score, abs=1e-4)
        found += len(a)
    assert found >= 12
