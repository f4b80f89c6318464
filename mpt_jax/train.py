r"""Trains a prompt (an MPT stage) from gin files, as t5x.train does.

  python -m mpt_jax.train \
    --gin_file=runs/teachers.gin --gin_file=smoke/synthetic.gin \
    --gin.MODEL_DIR="'/tmp/mpt/teachers'"

One process per host runs `train`. Rerunning the same command resumes from the
latest good checkpoint in MODEL_DIR; SIGTERM saves one at the current step and exits
with status 75 (`preemption.PREEMPTED_EXIT_CODE`). Any `train(...)` argument can be bound
(`--gin.train.train_steps=100`), and so can the groups it takes
(`--gin.DataConfig.batch_size=16`, `--gin.EvalConfig.period=500`).
"""

import dataclasses
import json
import logging
import sys
from typing import Callable, Optional, Union

from absl import flags
import gin
import jax
import optax

from mpt_jax import cli
from mpt_jax.backbone.loading import Backbone
from mpt_jax.backbone.loading import load_backbone
from mpt_jax.prompts import factories
from mpt_jax.prompts.prompt_set import PromptSet
from mpt_jax.runtime import data_checks
from mpt_jax.runtime import inputs
from mpt_jax.runtime import optimizers
from mpt_jax.runtime import preemption
from mpt_jax.runtime import run_lock
from mpt_jax.runtime import setup as setup_lib
from mpt_jax.runtime.best_prompt import DevEvaluation
from mpt_jax.runtime.configs import CheckpointConfig
from mpt_jax.runtime.configs import DataConfig
from mpt_jax.runtime.configs import EvalConfig
from mpt_jax.runtime.configs import ModelConfig
from mpt_jax.runtime.loop import TrainLoop
from mpt_jax.runtime.model_dir import ModelDir
from mpt_jax.runtime.partitioning import Partitioner
from tasks import registry

flags.adopt_module_key_flags(cli)  # --help lists the shared flags


@dataclasses.dataclass
class TrainResult:
  metrics: dict  # of the last step (and the last eval under 'eval')
  prompts: PromptSet  # the final prompt
  setup: setup_lib.RunSetup  # backbone, model and the frozen arrays on the mesh


def _check_batch_size(data: DataConfig, shards: int, partitioner: Partitioner) -> None:
  if data.batch_size % max(shards, partitioner.data_parallelism):
    raise ValueError(f"DataConfig.batch_size {data.batch_size} must divide over {shards} "
                     f"input shards and {partitioner.data_parallelism} data-parallel "
                     "devices.")


def _local_shards(num_input_shards: int) -> range:
  per_process = num_input_shards // jax.process_count()
  return range(jax.process_index() * per_process, (jax.process_index() + 1) * per_process)


@gin.configurable
def train(model_dir: str = gin.REQUIRED, *, backbone: Union[str, Backbone] = gin.REQUIRED,
          train_steps: int = gin.REQUIRED, data: Optional[DataConfig] = None,
          prompt: Callable = factories.decomposed_prompt, model: Optional[ModelConfig] = None,
          optimizer: Optional[optax.GradientTransformation] = None,
          partitioner: Optional[Partitioner] = None,
          checkpointing: Optional[CheckpointConfig] = None,
          evaluation: Optional[EvalConfig] = None, seed: int = 0,
          log_period: int = 10) -> TrainResult:
  """Trains a prompt. Rerunning the same call resumes.

  `prompt(backbone, task_names)` makes the prompt module (`factories`); the groups
  default to their gin-configured values. The run writes to `model_dir`:
  config.gin, tasks.json, train.jsonl / eval.jsonl and TensorBoard events,
  checkpoints/ (orbax), prompts/step_N.safetensors at every checkpoint,
  prompts.safetensors at the end, and best/ by `EvalConfig.best_metric`.
  """
  model_dir = ModelDir(model_dir)
  data, model = data or DataConfig(), model or ModelConfig()
  checkpointing, evaluation = checkpointing or CheckpointConfig(), evaluation or EvalConfig()
  partitioner = partitioner or Partitioner()
  num_input_shards = data.num_input_shards or jax.process_count()
  _check_batch_size(data, num_input_shards, partitioner)
  # Everything that can fail on a name or a path fails here, before any compilation.
  task_names = registry.task_names(data.mixture_or_task_name)
  data_checks.check_tasks(task_names, "train", data.task_feature_lengths, data.batch_size)
  if evaluation.period:  # (DevEvaluation names eval tasks that are not the run's)
    data_checks.check_tasks([t for t in evaluation.tasks or task_names if t in task_names],
                            evaluation.split, data.task_feature_lengths)
  loaded = backbone if isinstance(backbone, Backbone) else load_backbone(backbone)
  setup = setup_lib.build_setup(loaded, task_names, prompt(loaded, task_names), model,
                                partitioner, seed)
  dev_evaluation = (DevEvaluation(setup, model_dir, evaluation, data.task_feature_lengths,
                                  data.batch_size) if evaluation.period else None)
  loop = TrainLoop(setup, optimizer or optimizers.make_optimizer(), model_dir,
                   checkpointing, seed)
  try:
    with run_lock.held(model_dir.path):
      position = loop.start()  # a checkpoint of another run is refused before any write
      if jax.process_index() == 0:
        model_dir.config_gin.write_text(gin.config_str())
        model_dir.tasks_json.write_text(json.dumps(setup.run_facts, indent=2))
      rates = inputs.mixing_rates(task_names, data.mixture_or_task_name, data.examples_cap,
                                  "train")
      batches = inputs.MixedBatches(
          task_names, rates, data.task_feature_lengths, data.batch_size, seed=seed,
          stochastic_task_sampling=data.stochastic_task_sampling,
          max_tasks_per_batch=data.max_tasks_per_batch, num_input_shards=num_input_shards,
          local_shards=_local_shards(num_input_shards), position=position)
      metrics, final = loop.run(batches, train_steps, log_period, dev_evaluation)
  finally:
    loop.close()
    if dev_evaluation:
      dev_evaluation.close()
  return TrainResult(metrics, final, setup)


def main(argv):
  cli.start(argv)
  try:
    train()
  except preemption.Preempted as e:
    logging.warning("%s", e)
    sys.exit(preemption.PREEMPTED_EXIT_CODE)


if __name__ == "__main__":
  cli.run(main)
