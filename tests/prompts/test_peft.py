"""Parity with HuggingFace PEFT's MultitaskPromptTuning, and adapter import/export."""

import json

import numpy as np
import pytest
import safetensors.numpy

import mpt_jax
from mpt_jax.prompts import modules as prompts
from mpt_jax.prompts.prompt_set import PromptSet
from tests.helpers import FIXTURES


@pytest.mark.parametrize("rank", [1, 2])
def test_same_factors_give_pefts_prompts_and_logits(hf_t5_1_1, reference, rank):
  adapter = mpt_jax.load_prompts(FIXTURES / f"peft_mpt_r{rank}")
  assert adapter.kind == "decomposed" and adapter.rank == rank and adapter.num_tasks == 3
  np.testing.assert_allclose(adapter.merged(), reference[f"peft_r{rank}/prompts"],
                             rtol=1e-6, atol=1e-7)
  enc, dec = reference["encoder_input_tokens"], reference["decoder_input_tokens"]
  for task in range(3):
    logits = hf_t5_1_1.logits(enc, dec, adapter.prompt(task))
    np.testing.assert_allclose(logits, reference[f"peft_r{rank}/logits_task{task}"],
                               atol=1e-4, rtol=0)


@pytest.mark.parametrize("rank", [1, 2])
def test_peft_adapter_round_trips_unchanged(tmp_path, rank):
  source = FIXTURES / f"peft_mpt_r{rank}"
  exported = mpt_jax.export_peft(mpt_jax.load_prompts(source), tmp_path / "out")
  assert exported == [tmp_path / "out"]
  original_config = json.loads((source / "adapter_config.json").read_text())
  assert json.loads((tmp_path / "out" / "adapter_config.json").read_text()) == original_config
  before = safetensors.numpy.load_file(source / "adapter_model.safetensors")
  after = safetensors.numpy.load_file(tmp_path / "out" / "adapter_model.safetensors")
  assert before.keys() == after.keys()
  for key in before:
    np.testing.assert_array_equal(before[key], after[key])


def test_our_decomposed_prompt_exports_as_a_peft_mpt_adapter(tmp_path):
  rng = np.random.default_rng(0)
  ours = PromptSet("decomposed", {prompts.SHARED: rng.normal(size=(4, 8)),
                                  prompts.TASK_COLS: rng.normal(size=(2, 4, 1)),
                                  prompts.TASK_ROWS: rng.normal(size=(2, 1, 8))},
                   ["rte", "boolq"], backbone_config={"num_heads": 2, "num_layers": 3})
  mpt_jax.export_peft(ours, tmp_path)
  config = json.loads((tmp_path / "adapter_config.json").read_text())
  assert config["peft_type"] == "MULTITASK_PROMPT_TUNING"
  assert config["num_transformer_submodules"] == 1
  assert (config["num_virtual_tokens"], config["token_dim"]) == (4, 8)
  assert (config["num_tasks"], config["num_ranks"]) == (2, 1)
  assert (config["num_attention_heads"], config["num_layers"]) == (2, 3)
  tensors = safetensors.numpy.load_file(tmp_path / "adapter_model.safetensors")
  assert {k: v.shape for k, v in tensors.items()} == {
      "prompt_embeddings": (4, 8), "prefix_task_cols": (2, 4, 1),
      "prefix_task_rows": (2, 1, 8)}
  back = mpt_jax.load_prompts(tmp_path)
  assert back.task_names == ("rte", "boolq")
  np.testing.assert_allclose(back.merged(), ours.merged(), rtol=1e-6)


def test_a_bank_exports_one_prompt_tuning_adapter_per_task(tmp_path):
  bank = PromptSet("bank", {"prompts": np.arange(2 * 3 * 4, dtype=np.float32).reshape(
      2, 3, 4)}, ["mnli", "qqp"])
  written = mpt_jax.export_peft(bank, tmp_path)
  assert written == [tmp_path / "mnli", tmp_path / "qqp"]
  for index, directory in enumerate(written):
    config = json.loads((directory / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING"
    single = mpt_jax.load_prompts(directory)
    assert single.kind == "single" and single.task_names == (directory.name,)
    np.testing.assert_array_equal(single.prompt(directory.name), bank.merged()[index])


def test_a_decoder_prompting_adapter_is_refused(tmp_path):
  mpt_jax.export_peft(mpt_jax.load_prompts(FIXTURES / "peft_mpt_r1"), tmp_path)
  config = json.loads((tmp_path / "adapter_config.json").read_text())
  config["num_transformer_submodules"] = 2
  (tmp_path / "adapter_config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match="num_transformer_submodules=2.*encoder only"):
    mpt_jax.load_prompts(tmp_path)
  (tmp_path / "adapter_model.safetensors").unlink()
  with pytest.raises(FileNotFoundError, match="adapter_model.bin is a pickle"):
    mpt_jax.load_prompts(tmp_path)


def test_per_task_p_star_exports_one_peft_adapter_per_task(tmp_path):
  rng = np.random.default_rng(0)
  per_task = PromptSet("decomposed", {prompts.SHARED: rng.normal(size=(2, 4, 6)),
                                      prompts.TASK_COLS: rng.normal(size=(2, 4, 1)),
                                      prompts.TASK_ROWS: rng.normal(size=(2, 1, 6))},
                       ["rte", "cb"])
  assert per_task.shared_per_task
  written = mpt_jax.export_peft(per_task, tmp_path)
  assert written == [tmp_path / "rte", tmp_path / "cb"]
  for index, directory in enumerate(written):
    adapter = mpt_jax.load_prompts(directory)
    assert adapter.num_tasks == 1 and adapter.task_names == (directory.name,)
    np.testing.assert_allclose(adapter.prompt(0), per_task.prompt(index), rtol=1e-6)
