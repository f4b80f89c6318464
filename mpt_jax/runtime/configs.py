"""The groups of settings `train()` and `evaluate()` take, as t5x groups its
DatasetConfig and CheckpointConfig: what to train on, what the model is, when to
checkpoint and how to evaluate. Each is gin-configurable, so a gin file sets
`DataConfig.batch_size = 32` and every run built afterwards sees it.
"""

import dataclasses
from typing import Callable, Mapping, Optional, Sequence

import gin

from mpt_jax.model import models


def _setting_group(cls):
  """A frozen dataclass whose fields gin can bind (`DataConfig.batch_size = 32`)."""
  return gin.configurable(dataclasses.dataclass(frozen=True)(cls))


@_setting_group
class DataConfig:
  """What a run trains on, and how its batches are made."""
  mixture_or_task_name: str = gin.REQUIRED  # fixes the task ids: a mixture's tasks in order
  task_feature_lengths: Mapping[str, int] = gin.REQUIRED
  batch_size: int = gin.REQUIRED
  stochastic_task_sampling: bool = False  # MPT's stage 2: K ~ U[2, κ] tasks per batch
  max_tasks_per_batch: Optional[int] = None  # κ; default: all the run's tasks
  examples_cap: Optional[int] = None  # examples-proportional cap; None: the mixture's rates
  num_input_shards: Optional[int] = None  # default: one per process


@_setting_group
class ModelConfig:
  """The model built over the backbone, and the backbone's run-time overrides."""
  # PromptTuningModel, or DistillationModel with the teachers run's prompt file.
  model_cls: Callable[..., models.PromptTuningModel] = models.PromptTuningModel
  teacher_prompts: Optional[str] = None
  dropout_rate: Optional[float] = None  # default: the backbone config's
  dtype: Optional[str] = None  # activations ('bfloat16' on TPU); default: the config's
  # TPU scale (README "Memory at scale"): what each layer keeps for the backward pass
  # ('none', 'full', 'dots_with_no_batch_dims', 'dots'), a scan over each layer stack,
  # and the frozen backbone held in 'bfloat16' (it is never updated; default float32).
  remat_policy: str = "none"
  scan_layers: bool = False
  frozen_dtype: Optional[str] = None


@_setting_group
class CheckpointConfig:
  """Save every `period` steps (and at the end), keeping the newest `keep`."""
  period: Optional[int] = 100
  keep: Optional[int] = 3


@_setting_group
class EvalConfig:
  """How prompts are evaluated: during training (the dev split, keeping the best prompt)
  and by `mpt_jax.eval`."""
  period: int = 0  # training evaluates `split` every `period` steps; 0: never
  split: str = "validation"
  tasks: Optional[Sequence[str]] = None  # default: the run's (or prompt file's) tasks
  batch_size: Optional[int] = None  # default: the training batch size (eval: 32)
  rank_classification: bool = False  # score every label string, predict the likeliest
  best_metric: str = "average"  # or 'task/metric': what picks the best prompt
  num_examples: Optional[int] = None  # per task and split; default: all
