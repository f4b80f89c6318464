"""Reads the parameters of a T5X checkpoint, in either of t5x's on-disk formats, and
writes a backbone as an orbax one that t5x restores (INITIAL_CHECKPOINT_PATH).

* legacy: `checkpoint_N/checkpoint`, a msgpack of {'version', 'optimizer': {'target',
  'state'}} whose large leaves are TensorStore specs of zarr arrays stored beside it
  (`checkpoint_N/target.encoder.layers_0.attention.query.kernel/`);
* orbax: `checkpoint_N/state/`, an orbax PyTree of {'target', 'state'}.

Only `target` (the parameters) is read; optimizer slots are skipped. The model config
is not in a T5X checkpoint, so `infer_config` derives it from the parameter shapes.
"""

import copy
import os
import re

from etils import epath
from flax import serialization
from flax import traverse_util
import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts

from mpt_jax import paths
from mpt_jax.backbone.config import T5Config

_STEP_DIR = re.compile(r"checkpoint_(\d+)")


def find_checkpoint(path) -> epath.Path:
  """The `checkpoint_N` directory a path names: itself, or the latest one inside it."""
  path = paths.as_path(path)
  if path.is_file() and path.name == "checkpoint":
    path = path.parent
  if not path.exists():
    raise FileNotFoundError(f"T5X checkpoint {path} does not exist.")
  if _STEP_DIR.fullmatch(path.name):
    return path
  steps = [(int(m.group(1)), p) for p in path.iterdir()
           if (m := _STEP_DIR.fullmatch(p.name)) and p.is_dir()]
  if not steps:
    raise FileNotFoundError(f"{path} holds no checkpoint_N directory.")
  return max(steps)[1]


def is_t5x_checkpoint(path) -> bool:
  try:
    directory = find_checkpoint(path)
  except FileNotFoundError:
    return False
  return (directory / "checkpoint").is_file() or (directory / "state").is_dir()


def absolute_ts_spec(spec: dict, checkpoint_dir: str) -> dict:
  """Makes a stored TensorStore spec's relative path absolute, as t5x does on restore.

  Local paths use the 'file' kvstore; `gs://bucket/dir` uses 'gcs' with that bucket
  (t5x writes a dummy bucket so that checkpoints can move between buckets).
  """
  spec = copy.deepcopy(spec)
  kvstore = spec["kvstore"]
  relative = kvstore.pop("path", None) or spec.pop("path")
  match = re.fullmatch(r"gs://([^/]*)/(.*)", checkpoint_dir)
  if match:
    spec["kvstore"] = {"driver": "gcs", "bucket": match.group(1),
                       "path": os.path.join(match.group(2), relative)}
  else:
    spec["kvstore"] = {"driver": "file", "path": os.path.join(checkpoint_dir, relative)}
  return spec


def _is_ts_spec(leaf) -> bool:
  return isinstance(leaf, dict) and "driver" in leaf and "kvstore" in leaf


def _read_legacy(directory: epath.Path) -> dict:
  contents = serialization.msgpack_restore((directory / "checkpoint").read_bytes())
  state = contents.get("optimizer", contents)
  if "target" not in state:
    raise ValueError(f"{directory}/checkpoint has no 'target' (parameters): "
                     f"top-level keys {sorted(contents)}.")
  flat = {}
  spec_leaves = traverse_util.flatten_dict(state["target"], sep="/", is_leaf=
                                           lambda _, v: _is_ts_spec(v))
  for name, leaf in spec_leaves.items():
    if _is_ts_spec(leaf):
      array = ts.open(absolute_ts_spec(leaf, str(directory)), open=True).result()
      leaf = array.read().result()
    flat[name] = np.asarray(leaf, dtype=np.float32)
  return flat


def _read_orbax(directory: epath.Path) -> dict:
  checkpointer = ocp.PyTreeCheckpointer()
  metadata = checkpointer.metadata(directory)
  tree = getattr(metadata, "item_metadata", metadata)
  tree = getattr(tree, "tree", tree)
  if "target" not in tree:
    raise ValueError(f"{directory} has no 'target' (parameters): keys {sorted(tree)}.")
  item = {"target": jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype),
                                 tree["target"])}
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
  restored = checkpointer.restore(directory, args=ocp.args.PyTreeRestore(
      item=item, restore_args=restore_args, partial_restore=True))
  flat = traverse_util.flatten_dict(restored["target"], sep="/")
  return {k: np.asarray(v, dtype=np.float32) for k, v in flat.items()}


def read_t5x_param(path, name: str) -> np.ndarray:
  """One parameter ('token_embedder/embedding') without reading the others."""
  directory = find_checkpoint(path)
  if (directory / "checkpoint").is_file():
    contents = serialization.msgpack_restore((directory / "checkpoint").read_bytes())
    leaf = contents.get("optimizer", contents)["target"]
    for part in name.split("/"):
      leaf = leaf[part]
    if _is_ts_spec(leaf):
      leaf = ts.open(absolute_ts_spec(leaf, str(directory)), open=True).result().read().result()
    return np.asarray(leaf, np.float32)
  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.metadata(directory / "state").item_metadata.tree
  leaf = tree["target"]
  for part in name.split("/"):
    leaf = leaf[part]
  item = traverse_util.unflatten_dict(
      {("target", *name.split("/")): jax.ShapeDtypeStruct(leaf.shape, leaf.dtype)})
  restored = checkpointer.restore(directory / "state", args=ocp.args.PyTreeRestore(
      item=item, restore_args=jax.tree.map(
          lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item), partial_restore=True))
  value = restored["target"]
  for part in name.split("/"):
    value = value[part]
  return np.asarray(value, np.float32)


def read_t5x_params(path) -> dict[str, np.ndarray]:
  """Flat {'encoder/layers_0/attention/query/kernel': array} of a T5X checkpoint."""
  directory = find_checkpoint(path)
  if (directory / "checkpoint").is_file():
    return _read_legacy(directory)
  if (directory / "state").is_dir():
    return _read_orbax(directory / "state")
  raise FileNotFoundError(
      f"{directory} is neither a legacy T5X checkpoint (no 'checkpoint' msgpack file) "
      "nor an orbax one (no 'state' directory).")


def infer_config(flat: dict[str, np.ndarray], **overrides) -> T5Config:
  """Derives the T5 config from parameter shapes.

  Not recoverable from shapes, so taken from `overrides` or the T5 defaults:
  relative_attention_max_distance (128), dropout_rate, layer_norm_epsilon.
  """
  vocab, d_model = flat["token_embedder/embedding"].shape
  heads, buckets = flat["encoder/relpos_bias/rel_embedding"].shape
  joined_kv = flat["encoder/layers_0/attention/query/kernel"].shape[1]
  gated = "encoder/layers_0/mlp/wi_0/kernel" in flat
  d_ff = flat[f"encoder/layers_0/mlp/{'wi_0' if gated else 'wi'}/kernel"].shape[1]

  def count(stack):
    return len({m.group(1) for k in flat if (m := re.match(rf"{stack}/layers_(\d+)/", k))})

  values = dict(vocab_size=vocab, d_model=d_model, d_kv=joined_kv // heads, d_ff=d_ff,
                num_heads=heads, num_layers=count("encoder"),
                num_decoder_layers=count("decoder"),
                feed_forward_proj="gated-gelu" if gated else "relu",
                tie_word_embeddings="decoder/logits_dense/kernel" not in flat,
                relative_attention_num_buckets=buckets)
  values.update(overrides)
  return T5Config(**values)


def write_t5x_checkpoint(params: dict, directory, step: int = 1) -> epath.Path:
  """Writes `params` as t5x's orbax checkpoint DIRECTORY/checkpoint_STEP (PyTree `state`
  of {'target', 'state': {'step'}}, OCDBT), the layout t5x.train restores a backbone
  from; returns the checkpoint's path."""
  directory = paths.as_path(directory)
  manager = ocp.CheckpointManager(
      directory if directory.is_absolute() else directory.absolute(),
      item_handlers={"state": ocp.PyTreeCheckpointHandler(use_ocdbt=True)},
      options=ocp.CheckpointManagerOptions(step_prefix="checkpoint"))
  state = {"target": jax.tree.map(np.asarray, params),
           "state": {"step": np.array(step, np.int32)}}
  manager.save(step, args=ocp.args.Composite(state=ocp.args.PyTreeSave(state)))
  manager.wait_until_finished()
  manager.close()
  return directory / f"checkpoint_{step}"
