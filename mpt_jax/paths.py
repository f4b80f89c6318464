"""Paths that may be local or remote (gs://): every file the library reads or writes
goes through etils.epath, so a MODEL_DIR or checkpoint on Cloud Storage works like a
local one. Libraries that need a real local file (safetensors) get a temporary copy.
"""

import contextlib
import os
import shutil
import tempfile
from typing import Callable, Iterator, Union

from etils import epath

PathLike = Union[str, os.PathLike]


def is_remote(path: PathLike) -> bool:
  return "://" in os.fspath(path)


def as_path(path: PathLike) -> epath.Path:
  """An epath.Path; local paths are made absolute (subprocesses may change directory)."""
  text = os.fspath(path)
  return epath.Path(text if is_remote(text) else os.path.abspath(text))


@contextlib.contextmanager
def local_copy(path: PathLike) -> Iterator[str]:
  """A local filesystem path with the file's content: the file itself if it is local."""
  path = as_path(path)
  if not is_remote(path):
    yield os.fspath(path)
    return
  with tempfile.TemporaryDirectory() as directory:
    local = os.path.join(directory, path.name)
    with path.open("rb") as source, open(local, "wb") as target:
      shutil.copyfileobj(source, target)
    yield local


def write_atomically(path: PathLike, write: Callable[[str], None]) -> epath.Path:
  """Calls `write(local_file)` and moves the result to `path` in one step, so readers
  never see a half-written file (and remote files are written whole)."""
  path = as_path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  # A local file is staged beside its destination: a rename within one filesystem.
  staging = None if is_remote(path) else os.fspath(path.parent)
  with tempfile.TemporaryDirectory(dir=staging, prefix=".tmp-") as directory:
    local = os.path.join(directory, path.name)
    write(local)
    if is_remote(path):
      epath.Path(local).copy(path, overwrite=True)
    else:
      os.replace(local, os.fspath(path))
  return path
