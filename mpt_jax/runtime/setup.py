"""The run setup every command shares (train, eval, infer): the run's tasks, its prompt
module and model, and the frozen backbone placed on the mesh, all built and checked
before anything compiles."""

import dataclasses
from typing import Any, Optional, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mpt_jax.backbone import params as backbone_params
from mpt_jax.backbone.config import T5Config
from mpt_jax.backbone.loading import Backbone
from mpt_jax.model import models
from mpt_jax.prompts import factories
from mpt_jax.prompts.prompt_set import PromptSet
from mpt_jax.runtime.configs import ModelConfig
from mpt_jax.runtime.partitioning import Partitioner


@dataclasses.dataclass
class RunSetup:
  """A run's fixed parts. The trainable prompt itself lives apart from it."""
  backbone: Backbone
  task_names: list[str]  # in task-id order
  prompt_module: nn.Module
  model: models.PromptTuningModel
  partitioner: Partitioner
  frozen: Any  # global arrays: the backbone (and a distillation run's teacher prompts)
  prompt_axes: Any  # logical axes of the trainable tree {'prompt': ...}
  initial_prompt: dict  # host arrays {'prompt': ...}, as the prompt module starts

  @property
  def prompt_shardings(self):
    return self.partitioner.param_shardings(self.prompt_axes)

  @property
  def frozen_shardings(self):
    return jax.tree.map(lambda x: x.sharding, self.frozen)

  @property
  def run_facts(self) -> dict:
    """What a checkpoint must agree with to be resumed by this run."""
    return {"backbone": self.backbone.source,
            "backbone_fingerprint": self.backbone.fingerprint, "tasks": self.task_names}

  def prompt_set(self, trainable, step: int, **metadata) -> PromptSet:
    """The trainable prompt as a PromptSet (host arrays, task names, backbone facts)."""
    return PromptSet.from_module(
        self.prompt_module, trainable["prompt"], self.task_names,
        backbone_config=self.backbone.config.to_dict(),
        metadata={"step": step, "backbone": self.backbone.source,
                  "backbone_fingerprint": self.backbone.fingerprint, **metadata})


def network_config(model: ModelConfig, backbone_config: T5Config) -> T5Config:
  """The backbone's config as this run executes it: ModelConfig's overrides applied."""
  overrides = {"dropout_rate": model.dropout_rate, "dtype": model.dtype,
               "remat_policy": model.remat_policy, "scan_layers": model.scan_layers}
  return backbone_config.replace(**{k: v for k, v in overrides.items() if v is not None})


def build_model(model: ModelConfig, backbone_config: T5Config, prompt_module: nn.Module,
                task_names: Sequence[str], backbone: Optional[Backbone] = None,
                teacher: Optional[nn.Module] = None) -> models.PromptTuningModel:
  """The model object over `prompt_module`, with the teachers' prompts reordered to
  `task_names` when `model.teacher_prompts` names them (and checked to belong to
  `backbone`, when given). `teacher` gives the teacher bank module directly instead."""
  config = network_config(model, backbone_config)
  if teacher is None and model.teacher_prompts:
    teacher = factories.teacher_bank(model.teacher_prompts, task_names, backbone)
  student_shape = (prompt_module.length, prompt_module.embed_dim)
  if teacher is not None and (teacher.length, teacher.embed_dim) != student_shape:
    raise ValueError(
        f"The teacher prompts in {model.teacher_prompts} are {teacher.length} x "
        f"{teacher.embed_dim} (length x width), the student prompt {student_shape[0]} x "
        f"{student_shape[1]}: distillation compares them position by position. Use the "
        "teachers run's PROMPT_LENGTH and backbone.")
  return model.model_cls(config, prompt_module, teacher_prompt=teacher)


def frozen_layout(params: dict, config: T5Config, model: ModelConfig) -> dict:
  """The backbone's parameters as the network takes them: stacked per layer stack
  under `scan_layers`, cast to `frozen_dtype` when one is set."""
  if config.scan_layers:
    params = backbone_params.stack_layers(params, config)
  if model.frozen_dtype:
    dtype = jnp.dtype(model.frozen_dtype)
    params = jax.tree.map(lambda x: x.astype(dtype), params)
  return params


def place_backbone(backbone: Backbone, partitioner: Partitioner,
                   model: Optional[ModelConfig] = None) -> dict:
  """The backbone's parameters as global arrays sharded by their logical axes, in the
  layout and dtype `model` runs them in."""
  model = model or ModelConfig()
  config = network_config(model, backbone.config)
  axes = backbone_params.abstract_variables(config)["params_axes"]
  params = frozen_layout(flax.core.unfreeze(backbone.params), config, model)
  return partitioner.place(params, partitioner.param_shardings(axes))


def build_setup(backbone: Backbone, task_names: Sequence[str], prompt_module: nn.Module,
                model: ModelConfig, partitioner: Partitioner, seed: int = 0,
                placed_backbone: Optional[dict] = None) -> RunSetup:
  """Builds the model and places the frozen arrays; the prompt starts from `seed`.

  `placed_backbone` (from `place_backbone`) spares placing the backbone again when one
  process builds several setups over it (evaluating several prompts).
  """
  task_names = list(task_names)
  built = build_model(model, backbone.config, prompt_module, task_names, backbone)
  ids = jnp.zeros((1,), jnp.int32)
  prompt_vars = prompt_module.init(jax.random.PRNGKey(seed), ids)
  frozen = dict(placed_backbone or place_backbone(backbone, partitioner, model))
  teacher = built.network.teacher_prompt
  if teacher is not None:
    teacher_vars = teacher.init(jax.random.PRNGKey(0), ids)
    frozen["teacher_prompt"] = partitioner.place(
        flax.core.unfreeze(teacher_vars["params"]),
        partitioner.param_shardings(teacher_vars["params_axes"]))
  initial = {"prompt": jax.tree.map(np.asarray, flax.core.unfreeze(prompt_vars["params"]))}
  return RunSetup(backbone, task_names, prompt_module, built, partitioner, frozen,
                  {"prompt": prompt_vars["params_axes"]}, initial)
