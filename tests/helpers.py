"""Helpers every test folder shares: the committed fixtures, tiny random backbones and
toy trainings, checkpoints in t5x's on-disk layouts, and the task catalog on mocked TFDS
data. The pytest fixtures built from them are in conftest.py.

T5X layouts (`write_legacy`, `write_orbax`) were checked against checkpoints t5x itself
wrote (commit cc342d4, tiny T5 1.1): legacy `checkpoint_N/checkpoint` msgpack
{'version': 3, 'optimizer': {'target', 'state'}} with zarr arrays
`target.<dotted.name>/` (gzip level 1) beside it, and orbax `checkpoint_N/state/`
(PyTree with OCDBT) written by a CheckpointManager whose step prefix is 'checkpoint'.

The mocked catalog: seqio's TFDS sources take split sizes from `builder.info.splits`.
Under `tfds.testing.mock_data` a builder only has split metadata if a
`dataset_info.json` exists in the mock data dir (MockPolicy.USE_FILES), so
`mocked_tfds` writes one per catalog dataset: the builder's real features plus
invented split sizes (`mock_size`). It serves `_as_dataset` from `fake_dataset`, whose
examples say where they come from: every text is "<dataset[/config]> <split>
<position> <feature path>", so a test traces any preprocessed example back to its
TFDS split and position. Class ids cycle through the classes, other integers are
position // 2 (MultiRC and ReCoRD groups of two), floats are scores in [0, 5) off the
0.2 grid, and sequences have two elements.
"""

import contextlib
import json
import pathlib
import re
import tempfile

from flax import serialization
from flax import traverse_util
import numpy as np
import orbax.checkpoint as ocp
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds
import tensorstore as ts

import mpt_jax
from mpt_jax import train as train_lib
from mpt_jax.prompts import factories
from mpt_jax.prompts import modules as prompt_modules
from mpt_jax.runtime.configs import CheckpointConfig
from mpt_jax.runtime.configs import DataConfig
from mpt_jax.runtime.configs import EvalConfig
from mpt_jax.runtime.configs import ModelConfig
import tasks.catalog
from tasks.catalog import splits
from tests import toy_tasks  # pylint: disable=unused-import  (registers the toy tasks)

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = pathlib.Path(__file__).parent / "fixtures"

# --- tiny backbones and toy trainings -------------------------------------------------
TINY = dict(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_heads=4, num_layers=2,
            num_decoder_layers=2, dropout_rate=0.0)
TOY_LENGTHS = {"inputs": 16, "targets": 4}


def write_tiny_backbone(directory, seed: int = 0) -> pathlib.Path:
  config = mpt_jax.named_config("t5_1_1_tiny", **TINY)
  return pathlib.Path(mpt_jax.random_backbone(config, seed=seed).save(directory))


def bank_prompt(length=4):
  return lambda backbone, names: factories.prompt_bank(backbone, names, length=length)


def train_toy(model_dir, backbone, *, mixture="toy_mix", train_steps=20, batch_size=8,
              checkpoint_period=10, eval_period=0, eval_tasks=None,
              rank_classification=False, num_input_shards=None, dropout_rate=None,
              optimizer=None, partitioner=None, prompt=None, seed=0):
  """`train()` on the toy tasks with a bank of length-4 prompts."""
  return train_lib.train(
      str(model_dir), backbone=str(backbone), train_steps=train_steps,
      data=DataConfig(mixture, TOY_LENGTHS, batch_size, num_input_shards=num_input_shards),
      prompt=prompt or bank_prompt(), model=ModelConfig(dropout_rate=dropout_rate),
      optimizer=optimizer, partitioner=partitioner,
      checkpointing=CheckpointConfig(period=checkpoint_period),
      evaluation=EvalConfig(period=eval_period, tasks=eval_tasks,
                            rank_classification=rank_classification),
      seed=seed, log_period=1)


def toy_batch(reference, task_ids=(2, 0, 1)) -> dict:
  """A batch of the reference fixture's encoder inputs with short targets."""
  targets = np.array([[5, 6, 1, 0, 0], [7, 1, 0, 0, 0], [8, 9, 10, 1, 0]], np.int32)
  return {"encoder_input_tokens": reference["encoder_input_tokens"],
          "decoder_input_tokens": np.pad(targets[:, :-1], ((0, 0), (1, 0))),
          "decoder_target_tokens": targets,
          "decoder_loss_weights": (targets > 0).astype(np.int32),
          "task_ids": np.asarray(task_ids, np.int32)}


def decomposed_set(num_tasks=3, l=4, d=6, r=2, seed=0) -> mpt_jax.PromptSet:
  """A random decomposed prompt set of tasks t0, t1, ..."""
  rng = np.random.default_rng(seed)
  arrays = {prompt_modules.SHARED: rng.normal(size=(l, d)),
            prompt_modules.TASK_COLS: rng.normal(size=(num_tasks, l, r)),
            prompt_modules.TASK_ROWS: rng.normal(size=(num_tasks, r, d))}
  return mpt_jax.PromptSet("decomposed", arrays, [f"t{i}" for i in range(num_tasks)],
                           backbone_config={"d_model": d}, metadata={"step": 7})


def logged(model_dir, name="train"):
  """The rows of a run's train.jsonl (or eval.jsonl)."""
  lines = (pathlib.Path(model_dir) / f"{name}.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines]


# --- checkpoints in t5x's layouts ------------------------------------------------------
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


# --- the task catalog on mocked TFDS data ---------------------------------------------
SUFFIX = "_bytes"
TRAIN_EXTRA = 4  # training examples left over after the 1,000 held out
HALVED = 9  # an odd validation set, so the halves differ in size
OTHER = 5
TRACE = re.compile(r"(\S+) (\S+) (\d+) ")


def mock_size(spec, tfds_split: str) -> int:
  """Invented size of a TFDS split: just big enough for the spec's split rule."""
  sizes = [OTHER]
  for part in spec.parts.values():
    if part.tfds_split != tfds_split or not part.permuted:
      continue
    if part.start is splits.HALF or part.stop is splits.HALF:
      sizes.append(HALVED)
    else:  # a `large` rule: 1,000 held out, the rest trained on (Yelp's cap is not reached)
      sizes.append(splits.HELD_OUT + TRAIN_EXTRA)
  return max(sizes)


def dataset_sizes() -> dict[str, dict[str, int]]:
  """{tfds name: {tfds split: size}} over every catalog spec."""
  sizes = {}
  for spec in tasks.catalog.SPECS:
    for name in spec.tfds_names:
      for part in spec.parts.values():
        sizes.setdefault(name, {})[part.tfds_split] = mock_size(spec, part.tfds_split)
  return sizes


def _fake(feature, origin: str, positions: tf.Tensor, path: str):
  """The values of `feature` for all `positions` at once ([n, ...] tensors)."""
  if isinstance(feature, tfds.features.FeaturesDict):
    return {key: _fake(f, origin, positions, f"{path}/{key}".lstrip("/"))
            for key, f in feature.items()}
  if isinstance(feature, tfds.features.Sequence):
    elements = [_fake(feature.feature, origin, positions, f"{path}.{j}") for j in range(2)]
    return tf.nest.map_structure(lambda *xs: tf.stack(xs, axis=1), *elements)
  if isinstance(feature, tfds.features.ClassLabel):
    return positions % feature.num_classes
  dtype = feature.tf_dtype
  if dtype == tf.string:
    return tf.strings.join([origin, tf.strings.as_string(positions), path], " ")
  if dtype.is_floating:
    return tf.cast(positions * 37 % 500, dtype) / 100
  if dtype.is_bool:
    return positions % 2 == 0
  return tf.cast(positions // 2, dtype)


def fake_dataset(builder, split, decoders=None, read_config=None, shuffle_files=False):
  """Mock of `FileReaderBuilder._as_dataset`: the split's examples, in position order."""
  del decoders, read_config, shuffle_files
  config = builder.builder_config
  origin = f"{builder.name}/{config.name} {split}" if config else f"{builder.name} {split}"
  positions = tf.range(builder.info.splits[split].num_examples, dtype=tf.int64)
  return tf.data.Dataset.from_tensor_slices(_fake(builder.info.features, origin, positions, ""))


def write_metadata(data_dir: str) -> None:
  for name, sizes in dataset_sizes().items():
    builder = tfds.builder(name, data_dir=data_dir)
    template = tfds.core.ShardedFileTemplate(
        data_dir=builder.data_dir, template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
        dataset_name=builder.name, filetype_suffix="tfrecord")
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[size], num_bytes=0,
                            filename_template=template) for split, size in sizes.items()]))
    tf.io.gfile.makedirs(builder.data_dir)
    builder.info.write_to_directory(builder.data_dir)


@contextlib.contextmanager
def mocked_tfds():
  """Catalog datasets served by `fake_dataset`, with their split metadata written."""
  # seqio memoizes builders by (name, data dir) across sources; builders made outside
  # this mock must not leak in, nor mocked ones out.
  seqio.utils.LazyTfdsLoader._MEMOIZED_BUILDERS.clear()  # pylint: disable=protected-access
  with tempfile.TemporaryDirectory() as data_dir:
    write_metadata(data_dir)
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_FILES, data_dir=data_dir,
                                as_dataset_fn=fake_dataset):
      yield
  seqio.utils.LazyTfdsLoader._MEMOIZED_BUILDERS.clear()  # pylint: disable=protected-access


def trace(text: str) -> tuple[str, str, int]:
  """(dataset/config, TFDS split, position) of the first fake text in `text`."""
  match = TRACE.search(text)
  assert match, f"no fake example trace in {text!r}"
  return match.group(1), match.group(2), int(match.group(3))


def as_text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def first_text(example) -> str:
  """A raw example's first text (in sorted key order); every text carries the trace."""
  for value in tf.nest.flatten(example):
    if isinstance(value, bytes):
      return value.decode()
    if isinstance(value, np.ndarray) and value.dtype == object and value.size:
      return as_text(value.flat[0])
  raise AssertionError(f"no text feature in {example}")
