"""A t5x action that saves the prompt as an mpt_jax prompt file after each training
period (t5x's orbax path ignores a custom checkpointer, so this hooks the loop)."""

from typing import Sequence

import jax
from t5x import trainer as t5x_trainer

from mpt_jax.prompts.prompt_set import PromptSet
from mpt_jax.runtime.model_dir import ModelDir
from mpt_jax.t5x.models import MptEncoderDecoderModel
from tasks import registry


class WritePromptFiles(t5x_trainer.BaseAction):
  """Writes MODEL_DIR/prompts/step_N.safetensors and MODEL_DIR/prompts.safetensors."""

  def __init__(self, model_dir: str, model: MptEncoderDecoderModel,
               mixture_or_task_name: str, task_modules: Sequence[str] = ()):
    registry.import_task_modules(task_modules)
    self.model_dir = ModelDir(model_dir)
    self.model = model
    self.task_names = registry.task_names(mixture_or_task_name)

  def prompt_set(self, train_state) -> PromptSet:
    step = int(jax.device_get(train_state.step))
    return PromptSet.from_module(
        self.model.mpt.network.prompt, train_state.params["prompt"], self.task_names,
        backbone_config=self.model.mpt.config.to_dict(),
        metadata={"step": step, "runtime": "t5x"})

  def run(self, train_state, metrics_by_task) -> bool:
    del metrics_by_task
    if jax.process_index() == 0:
      prompts = self.prompt_set(train_state)
      prompts.save(self.model_dir.step_prompts(prompts.metadata["step"]))
      prompts.save(self.model_dir.final_prompts)
    return False  # never stops training
