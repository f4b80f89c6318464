"""load_prompts: our prompt files and PEFT adapter directories, and what it refuses."""

import pytest

import mpt_jax
from tests import helpers


def test_loads_a_prompt_file_and_a_peft_adapter(tmp_path):
  saved = helpers.decomposed_set()
  from_file = mpt_jax.load_prompts(saved.save(tmp_path / "p.safetensors"))
  assert from_file.task_names == saved.task_names
  adapter = mpt_jax.load_prompts(helpers.FIXTURES / "peft_mpt_r1")
  assert adapter.kind == "decomposed" and adapter.rank == 1


def test_a_directory_without_an_adapter_config_is_refused(tmp_path):
  with pytest.raises(FileNotFoundError, match="without adapter_config.json"):
    mpt_jax.load_prompts(tmp_path)
