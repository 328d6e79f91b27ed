"""Running trained nets: model files checked before a runtime sees them (`model_check`), every
runtime behind one interface, our Caffe included (`backends`), the cascade and its recipes
built on those nets (`inference`), and predicting the points of many image files (`predict`).
The cascade takes backend nets; no backend knows the cascade.

May import: landmarks.common, landmarks.conventions, landmarks.nets, landmarks.train.
"""
