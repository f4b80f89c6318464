"""A t5x action that saves the prompt as an mpt_jax prompt file after each training
period (t5x's orbax path ignores a custom checkpointer, so this hooks the loop)."""

from typing import Sequence

import jax
import numpy as np
from t5x import trainer as t5x_trainer

from mpt_jax.config import T5Config
from mpt_jax.io import files
from mpt_jax.io.prompt_file import PromptSet
from mpt_jax.trainer import import_modules
from tasks import registry


def prompt_set(prompt_params, task_names, config: T5Config, step: int) -> PromptSet:
  tree = jax.tree.map(np.asarray, jax.device_get(prompt_params))
  kind = "single" if "prompt" in tree else "bank" if "prompts" in tree else "decomposed"
  return PromptSet(kind, dict(tree), task_names, backbone_config=config.to_dict(),
                   metadata={"step": step, "runtime": "t5x"})


class WritePromptFiles(t5x_trainer.BaseAction):
  """Writes MODEL_DIR/prompts/step_N.safetensors and MODEL_DIR/prompts.safetensors."""

  def __init__(self, model_dir: str, mixture_or_task_name: str, config: T5Config,
               task_modules: Sequence[str] = ()):
    import_modules(task_modules)
    self.model_dir = files.as_path(model_dir)
    self.task_names = registry.task_names(mixture_or_task_name)
    self.config = config

  def run(self, train_state, metrics_by_task) -> bool:
    del metrics_by_task
    if jax.process_index() == 0:
      step = int(jax.device_get(train_state.step))
      prompts = prompt_set(train_state.params["prompt"], self.task_names, self.config, step)
      prompts.save(self.model_dir / "prompts" / f"step_{step}.safetensors")
      prompts.save(self.model_dir / "prompts.safetensors")
    return False  # never stops training
