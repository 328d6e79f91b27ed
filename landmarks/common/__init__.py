"""Small shared helpers, the ground floor: writing files atomically (`atomic`), the run-folder
lock (`lock`), progress bars (`progress`), checking the user's options and turning disk
errors into one line (`checks`), prototxt text files (`protoio`) and where the project's Caffe
build is and what it can do (`caffe_runtime`).

May import: nothing of this project (the standard library, NumPy, protobuf, tqdm).
"""
