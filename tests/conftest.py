"""Fixtures every test folder shares (built from tests/helpers.py): the committed parity
references, the fixture backbones, a tiny random backbone on disk, and the task
catalog on mocked TFDS data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# libtpu (the aot extra) is installed for the AOT tests; without this, every process
# would first try to start a TPU. Commands the tests run inherit it.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top
import seqio  # pylint: disable=g-import-not-at-top

from tests import helpers  # pylint: disable=g-import-not-at-top
from tests import mocked_catalog  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope="session")
def reference():
  with np.load(helpers.FIXTURES / "reference.npz", allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def hf_t5_1_1():
  import mpt_jax  # pylint: disable=g-import-not-at-top
  return mpt_jax.load_backbone(helpers.FIXTURES / "hf_t5_1_1")


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory):
  """A tiny random T5 1.1 saved as a HuggingFace directory."""
  return helpers.write_tiny_backbone(tmp_path_factory.mktemp("backbone") / "tiny")


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory, tiny_backbone_dir):
  """(MODEL_DIR, TrainResult) of 30 steps on the toy tasks, dev-evaluated with rank
  classification at steps 0 and 30."""
  model_dir = tmp_path_factory.mktemp("toy_run") / "model"
  result = helpers.train_toy(model_dir, tiny_backbone_dir, train_steps=30, eval_period=30,
                             rank_classification=True)
  return model_dir, result


@pytest.fixture(scope="module")
def mock_catalog_tfds():
  with mocked_catalog.mocked_tfds():
    yield


@pytest.fixture(scope="session")
def byte_catalog():
  """The catalog registered again as `<name>_bytes`, tokenized with seqio.ByteVocabulary."""
  import tasks.catalog  # pylint: disable=g-import-not-at-top
  return tasks.catalog.register_all(seqio.ByteVocabulary(), name_suffix=helpers.SUFFIX)
