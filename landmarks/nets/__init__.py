"""The Caffe files a level needs, generated from one code path: the MobileNet-V2 train/test and
deploy nets (`mobilenet`), the training schedules and solvers (`solvers`), and which files go
where for the canonical prototxt/ and solvers/ and for a run (`generate`).

May import: landmarks.common, landmarks.conventions.
"""
