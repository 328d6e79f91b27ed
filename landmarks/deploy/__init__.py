"""Exports for deployment runtimes: the folded portable Caffe model (`fold`), ONNX and int8
(`onnx_export`), one net's export folder with ncnn and the checks against the original
(`export`), and both levels of a run with the whole cascade checked in every format
(`export_run`).

May import: landmarks.common, landmarks.conventions, landmarks.nets, landmarks.train,
landmarks.runtime.
"""
