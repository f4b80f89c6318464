"""Helpers every test folder shares: the committed fixtures, tiny random backbones and
toy trainings, and checkpoints in t5x's on-disk layouts. The pytest fixtures built from
them are in conftest.py; the task catalog on mocked TFDS data is in mocked_catalog.py.

T5X's legacy layout (`write_legacy`) was checked against checkpoints t5x itself wrote
(commit cc342d4, tiny T5 1.1): `checkpoint_N/checkpoint` msgpack {'version': 3,
'optimizer': {'target', 'state'}} with zarr arrays `target.<dotted.name>/` (gzip level 1)
beside it. Its orbax layout is written by the library (`Backbone.save_t5x`).
"""

import json
import pathlib
import sys

from flax import serialization
from flax import traverse_util
import numpy as np
import sentencepiece as spm
import tensorstore as ts

import mpt_jax
from mpt_jax import train as train_lib
from mpt_jax.prompts import factories
from mpt_jax.prompts import modules as prompt_modules
from mpt_jax.runtime.configs import CheckpointConfig
from mpt_jax.runtime.configs import DataConfig
from mpt_jax.runtime.configs import EvalConfig
from mpt_jax.runtime.configs import ModelConfig
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


def write_sentencepiece_model(directory, sentences, vocab_size: int) -> str:
  """A small SentencePiece model with T5's special ids (pad 0, eos 1, unk 2, no bos),
  covering every character of `sentences`; returns the .model path."""
  prefix = str(pathlib.Path(directory) / "spm")
  pathlib.Path(directory).mkdir(parents=True, exist_ok=True)
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences), model_prefix=prefix, vocab_size=vocab_size,
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
      hard_vocab_limit=False, minloglevel=2)
  return prefix + ".model"


def bank_prompt(length=4):
  return lambda backbone, names: factories.prompt_bank(backbone, names, length=length)


def toy_spec(model_dir, backbone, *, mixture="toy_mix", train_steps=20, batch_size=8,
             checkpoint_period=10, eval_period=0, eval_tasks=None,
             rank_classification=False, num_input_shards=None, dropout_rate=None,
             optimizer=None, partitioner=None, prompt=None, seed=0,
             **model_options) -> train_lib.RunSpec:
  """A run on the toy tasks with a bank of length-4 prompts; `backbone` is a path or a
  loaded Backbone, `model_options` are further ModelConfig fields (remat_policy,
  scan_layers, frozen_dtype)."""
  return train_lib.run_spec(
      str(model_dir), train_steps=train_steps,
      backbone=backbone if isinstance(backbone, mpt_jax.Backbone) else str(backbone),
      data=DataConfig(mixture, TOY_LENGTHS, batch_size, num_input_shards=num_input_shards),
      prompt=prompt or bank_prompt(),
      model=ModelConfig(dropout_rate=dropout_rate, **model_options),
      optimizer=optimizer, partitioner=partitioner,
      checkpointing=CheckpointConfig(period=checkpoint_period),
      evaluation=EvalConfig(period=eval_period, tasks=eval_tasks,
                            rank_classification=rank_classification),
      seed=seed, log_period=1)


def train_toy(model_dir, backbone, **options):
  """`train()` of `toy_spec(model_dir, backbone, **options)`."""
  return train_lib.train_bank([toy_spec(model_dir, backbone, **options)])[0]


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


def toy_train_command(model_dir, backbone, *extra) -> list[str]:
  """`python -m mpt_jax.train` on tests/toy.gin (200 steps, a checkpoint every 10)."""
  return [sys.executable, "-m", "mpt_jax.train", "--gin_file=tests/toy.gin",
          f"--gin.MODEL_DIR='{model_dir}'", f"--gin.BACKBONE='{backbone}'", *extra]


def last_logged_step(model_dir) -> int:
  """The last step a running run's train.jsonl has a whole line for; 0 before any."""
  path = pathlib.Path(model_dir) / "train.jsonl"
  whole = path.read_text().split("\n")[:-1] if path.exists() else []
  return json.loads(whole[-1])["step"] if whole else 0


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


SUFFIX = "_bytes"  # the byte-vocabulary copy of the catalog (conftest.byte_catalog)
