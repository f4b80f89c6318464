"""Writes checkpoints in the exact on-disk layouts t5x uses, for the reader tests.

Checked against checkpoints t5x itself wrote (commit cc342d4, tiny T5 1.1):
legacy `checkpoint_N/checkpoint` msgpack {'version': 3, 'optimizer': {'target',
'state'}} with zarr arrays `target.<dotted.name>/` (gzip level 1) beside it, and
orbax `checkpoint_N/state/` (PyTree with OCDBT) written by a CheckpointManager
whose step prefix is 'checkpoint'.
"""

import pathlib

from flax import serialization
from flax import traverse_util
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts


def _zarr_spec(relative: str, shape) -> dict:
  return {"driver": "zarr", "dtype": "float32",
          "kvstore": {"driver": "file", "path": relative},
          "metadata": {"chunks": list(shape), "compressor": {"id": "gzip", "level": 1},
                       "shape": list(shape)}}


def _write_zarr(directory: pathlib.Path, prefix: str, name: str, value) -> dict:
  value = np.asarray(value, np.float32)
  spec = _zarr_spec(f"{prefix}.{name.replace('/', '.')}/", value.shape)
  absolute = dict(spec, kvstore={"driver": "file",
                                 "path": str(directory / spec["kvstore"]["path"])})
  ts.open(absolute, create=True, open=True).result().write(value).result()
  return spec


def write_legacy(model_dir, params: dict, step: int, inline=("scale",)) -> pathlib.Path:
  """Leaves whose name ends in one of `inline` go into the msgpack itself."""
  directory = pathlib.Path(model_dir) / f"checkpoint_{step}"
  directory.mkdir(parents=True)
  target, slots = {}, {}
  for name, value in traverse_util.flatten_dict(params, sep="/").items():
    if name.endswith(inline):
      target[name] = np.asarray(value, np.float32)
    else:
      target[name] = _write_zarr(directory, "target", name, value)
    # Adafactor's slots, as t5x stores them: a zarr 'v' and inline placeholders.
    slots[name] = {"m": np.zeros(1, np.float32), "v_col": np.zeros(1, np.float32),
                   "v": _write_zarr(directory, "state.param_states", name + "/v", value)}
  contents = {"version": 3, "optimizer": {
      "target": traverse_util.unflatten_dict(target, sep="/"),
      "state": {"step": np.array(step, np.int32),
                "param_states": traverse_util.unflatten_dict(slots, sep="/")}}}
  (directory / "checkpoint").write_bytes(serialization.msgpack_serialize(contents))
  return directory


def write_orbax(model_dir, params: dict, step: int) -> pathlib.Path:
  manager = ocp.CheckpointManager(
      pathlib.Path(model_dir).absolute(),
      item_handlers={"state": ocp.PyTreeCheckpointHandler(use_ocdbt=True)},
      options=ocp.CheckpointManagerOptions(step_prefix="checkpoint"))
  state = {"target": params, "state": {"step": np.array(step, np.int32)}}
  manager.save(step, args=ocp.args.Composite(state=ocp.args.PyTreeSave(state)))
  manager.wait_until_finished()
  manager.close()
  return pathlib.Path(model_dir) / f"checkpoint_{step}"
