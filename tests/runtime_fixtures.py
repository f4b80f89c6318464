"""A tiny random backbone on disk and a helper to train on the toy tasks in-process."""

import json
import pathlib

import mpt_jax
from mpt_jax import prompt_config
from mpt_jax import trainer
from tests import toy_tasks  # pylint: disable=unused-import  (registers the toy tasks)

TINY = dict(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_heads=4, num_layers=2,
            num_decoder_layers=2, dropout_rate=0.0)


def write_tiny_backbone(directory, seed: int = 0) -> pathlib.Path:
  config = mpt_jax.named_config("t5_1_1_tiny", **TINY)
  return pathlib.Path(mpt_jax.random_backbone(config, seed=seed).save(directory))


def bank_prompt(length=4):
  return lambda backbone, names: prompt_config.prompt_bank(backbone, names, length=length)


def train_toy(model_dir, backbone, **overrides) -> trainer.TrainResult:
  args = dict(model_dir=str(model_dir), backbone=str(backbone),
              mixture_or_task_name="toy_mix",
              task_feature_lengths={"inputs": 16, "targets": 4}, batch_size=8,
              train_steps=20, prompt=bank_prompt(), checkpoint_period=10, log_period=1,
              seed=0)
  args.update(overrides)
  return trainer.train(**args)


def logged(model_dir, name="train"):
  lines = (pathlib.Path(model_dir) / f"{name}.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines]
