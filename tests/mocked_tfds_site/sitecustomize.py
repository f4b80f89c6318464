"""Serves the task catalog's TFDS datasets from `tests.mocked_catalog.mocked_tfds` in every
Python process started with this folder (and the repository) on PYTHONPATH, so a test runs
the real commands, and the stage processes a pipeline starts, on mocked data."""

# pylint: disable=g-bad-import-order,unused-import
import mpt_jax  # first, as in every command: it sets TensorFlow's log level
from tests import mocked_catalog

_MOCK = mocked_catalog.mocked_tfds()
_MOCK.__enter__()  # pylint: disable=unnecessary-dunder-call  (held for the process's life)
