"""Shared test set-up: keep glog's INFO lines out of the test output, and small helpers."""
import os

# Must be set before pycaffe is first imported: glog reads it once.
os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
