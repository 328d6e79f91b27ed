"""Training with the real `caffe train`: the driver that runs it, follows its log and picks up
whole snapshots (`driver`), Caffe's snapshot files (`snapshots`), reading Caffe logs
(`caffe_log`), the loss curves drawn from them (`loss_curves`) and the training-step
benchmark against stock Caffe (`bench`).

May import: landmarks.common, landmarks.conventions, landmarks.nets.
"""
