"""Prompts from wherever a user has them (our prompt file or a PEFT adapter directory),
and the check that they were trained on the backbone they are about to be used with."""

import logging

import gin

from mpt_jax import paths
from mpt_jax.prompts import peft
from mpt_jax.prompts.prompt_set import PromptSet


class BackboneMismatchError(ValueError):
  """A prompt file records another backbone than the one in use."""


def load_prompts(path, task_names=None) -> PromptSet:
  """Our prompt file (.safetensors / .npz), a PEFT adapter directory, or a folder of
  one-task PEFT adapters (as `export_peft` writes for a bank). `task_names` renames the
  tasks: a list in task-id order, or a mapping such as {'task_0': 'rte'} for an adapter
  PEFT trained, which records no names."""
  path = paths.as_path(path)
  if path.is_dir():
    if peft.is_peft_adapter(path):
      return peft.read_peft_adapter(path, task_names)
    if peft.adapter_subfolders(path):
      return peft.read_adapter_folder(path, task_names)
    raise FileNotFoundError(f"{path} is a directory without {peft.CONFIG_FILE} or adapter "
                            "subdirectories; pass a prompt file, a PEFT adapter directory "
                            "or a folder of them.")
  prompts = PromptSet.load(path)
  return prompts.with_task_names(task_names) if task_names is not None else prompts


@gin.configurable
def check_backbone(prompt_set: PromptSet, path, backbone, *,
                   allow_other_backbone: bool = False) -> None:
  """Refuses prompts trained on another backbone: prompt vectors live in their
  backbone's embedding space, and on another model they run without error but mean
  nothing. A file without a fingerprint (a PEFT adapter) is checked by width alone.
  `allow_other_backbone` turns the refusal into a warning (e.g. a fine-tuned copy)."""
  if prompt_set.embed_dim != backbone.config.d_model:
    raise BackboneMismatchError(
        f"The prompts in {path} are {prompt_set.embed_dim} wide, but the backbone "
        f"{backbone.source!r} has d_model {backbone.config.d_model}: they were trained on "
        "another model size. Use the backbone they were trained on.")
  recorded = prompt_set.metadata.get("backbone_fingerprint")
  if recorded is None or recorded == backbone.fingerprint:
    return
  message = (f"The prompts in {path} were trained on backbone "
             f"{prompt_set.metadata.get('backbone')!r} (fingerprint {recorded}), but this "
             f"run uses {backbone.source!r} (fingerprint {backbone.fingerprint}).")
  if not allow_other_backbone:
    raise BackboneMismatchError(
        f"{message} Use the backbone they were trained on, or bind "
        "check_backbone.allow_other_backbone = True to use them anyway.")
  logging.warning("%s Using them anyway (check_backbone.allow_other_backbone).", message)


def load_prompts_for(path, backbone) -> PromptSet:
  """`load_prompts(path)`, refused if they belong to another backbone than `backbone`."""
  prompt_set = load_prompts(path)
  check_backbone(prompt_set, path, backbone)
  return prompt_set
