"""Checks over named arrays that the backbone fingerprint, prompt files and run
checkpoints share: one SHA-256 recipe and one finiteness report."""

import hashlib
from typing import Any, Mapping

import jax
import numpy as np


def by_path(tree: Any) -> dict[str, np.ndarray]:
  """A pytree's leaves as host arrays named by their paths ("['params']['prompt']")."""
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def sha256(arrays: Mapping[str, np.ndarray]) -> str:
  """SHA-256 over every array's name, shape, dtype and bytes, in name order."""
  digest = hashlib.sha256()
  for name in sorted(arrays):
    value = np.ascontiguousarray(arrays[name])
    digest.update(f"{name}{value.shape}{value.dtype}".encode())
    digest.update(value.tobytes())
  return digest.hexdigest()


def non_finite(arrays: Mapping[str, np.ndarray]) -> list[str]:
  """'name (n of m values)' for each array holding NaN or inf."""
  report = []
  for name in sorted(arrays):
    value = np.asarray(arrays[name])
    if not np.isfinite(value).all():
      report.append(f"{name} ({int((~np.isfinite(value)).sum())} of {value.size} values)")
  return report
