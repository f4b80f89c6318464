"""Prompts from wherever a user has them: our prompt file or a PEFT adapter directory."""

from mpt_jax import paths
from mpt_jax.prompts import peft
from mpt_jax.prompts.prompt_set import PromptSet


def load_prompts(path) -> PromptSet:
  """Our prompt file (.safetensors / .npz) or a PEFT adapter directory."""
  path = paths.as_path(path)
  if path.is_dir():
    if peft.is_peft_adapter(path):
      return peft.read_peft_adapter(path)
    raise FileNotFoundError(f"{path} is a directory without {peft.CONFIG_FILE}; "
                            "pass a prompt file or a PEFT adapter directory.")
  return PromptSet.load(path)
