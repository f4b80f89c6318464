"""load_prompts: our prompt files and PEFT adapter directories, what it refuses, and
the check that prompts belong to the backbone they are used with."""

import logging
import types

import gin
import pytest

import mpt_jax
from mpt_jax.prompts import loading
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


def _backbone_like(fingerprint_of, d_model=6):
  """A stand-in with what check_backbone reads: config.d_model, source, fingerprint."""
  return types.SimpleNamespace(config=types.SimpleNamespace(d_model=d_model),
                               source=f"/models/{fingerprint_of}", fingerprint=fingerprint_of)


def _trained_on(fingerprint):
  saved = helpers.decomposed_set()
  saved.metadata.update(backbone="/models/a", backbone_fingerprint=fingerprint)
  return saved


def test_prompts_of_another_backbone_are_refused_unless_allowed(tmp_path, caplog):
  path = _trained_on("aaaa").save(tmp_path / "p.safetensors")
  assert loading.load_prompts_for(path, _backbone_like("aaaa")).task_names == ("t0", "t1", "t2")
  with pytest.raises(loading.BackboneMismatchError,
                     match=rf"{path} were trained on backbone '/models/a' \(fingerprint aaaa\)"
                           r".*uses '/models/bbbb' \(fingerprint bbbb\).*allow_other_backbone"):
    loading.load_prompts_for(path, _backbone_like("bbbb"))
  with gin.unlock_config():
    gin.bind_parameter("check_backbone.allow_other_backbone", True)
  try:
    with caplog.at_level(logging.WARNING):
      loading.load_prompts_for(path, _backbone_like("bbbb"))
  finally:
    gin.clear_config()
  assert "Using them anyway" in caplog.text


def test_prompts_of_another_width_are_refused_even_without_a_fingerprint(tmp_path):
  path = helpers.decomposed_set().save(tmp_path / "p.safetensors")  # no fingerprint
  loading.load_prompts_for(path, _backbone_like("any"))
  with pytest.raises(loading.BackboneMismatchError, match=rf"{path} are 6 wide.*d_model 8"):
    loading.load_prompts_for(path, _backbone_like("any", d_model=8))
