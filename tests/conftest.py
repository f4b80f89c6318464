"""Shared fixtures: the committed parity references and small random backbones."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def reference():
  with np.load(FIXTURES / "reference.npz", allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def hf_t5_1_1():
  import mpt_jax  # pylint: disable=g-import-not-at-top
  return mpt_jax.load_backbone(FIXTURES / "hf_t5_1_1")
