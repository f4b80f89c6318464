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


# --- serving exports: merged prompts, the recorded backbone, folders, task names ------

def test_merged_prompts_give_the_decomposed_prompts_logits(hf_t5_1_1, reference, tmp_path):
  decomposed = mpt_jax.load_prompts(FIXTURES / "peft_mpt_r2")
  merged = PromptSet.load(decomposed.to_merged().save(tmp_path / "merged.safetensors"))
  assert merged.kind == "merged" and merged.metadata["merged_from"] == "decomposed"
  assert merged.arrays["prompts"].shape == (3, 4, 32)
  enc, dec = reference["encoder_input_tokens"], reference["decoder_input_tokens"]
  for task in range(3):
    np.testing.assert_allclose(hf_t5_1_1.logits(enc, dec, merged.prompt(task)),
                               hf_t5_1_1.logits(enc, dec, decomposed.prompt(task)),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["mpt", "merged"])
def test_exported_adapters_loaded_by_auto_peft_model_give_our_logits(
    hf_t5_1_1, reference, kind):
  """The fixture script exported these prompts with export_peft (base_model_name_or_path
  = the T5 1.1 fixture) and loaded each adapter with AutoPeftModelForSeq2SeqLM."""
  prompts_ = mpt_jax.load_prompts(FIXTURES / "peft_mpt_r2")
  if kind == "merged":
    prompts_ = prompts_.to_merged()
  enc, dec = reference["encoder_input_tokens"], reference["decoder_input_tokens"]
  for task in range(3):
    np.testing.assert_allclose(hf_t5_1_1.logits(enc, dec, prompts_.prompt(task)),
                               reference[f"exported/{kind}/logits_task{task}"],
                               atol=1e-4, rtol=0)


def test_an_exported_adapter_records_the_backbone_its_prompt_file_names(tmp_path, caplog):
  prompts_ = mpt_jax.load_prompts(FIXTURES / "peft_mpt_r1")

  def base_model(metadata, **kwargs):
    prompts_.metadata.update(metadata)
    out = tmp_path / str(len(list(tmp_path.iterdir())))
    mpt_jax.export_peft(prompts_, out, **kwargs)
    return json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]

  hf_dir = str(FIXTURES / "hf_t5_1_1")
  assert base_model({"backbone": hf_dir}) == hf_dir
  assert base_model({"backbone": "google/t5-v1_1-base"}) == "google/t5-v1_1-base"
  assert base_model({"backbone": "/cache/hub/models--google--t5-v1_1-xl"}) is None
  cache_root = tmp_path / "models--google--t5-v1_1-xl"
  cache_root.mkdir()
  assert base_model({"backbone": str(cache_root)}) == "google/t5-v1_1-xl"
  assert base_model({"backbone": hf_dir}, base_model_name_or_path="/mine/t5") == "/mine/t5"
  with caplog.at_level("WARNING"):
    assert base_model({"backbone": "random:0"}) is None
  assert "'random:0' is not a HuggingFace model" in caplog.text
  assert "Pass base_model_name_or_path=" in caplog.text


def test_a_peft_trained_adapters_tasks_are_renamed_by_a_list_or_a_mapping():
  adapter = FIXTURES / "peft_mpt_r1"
  assert mpt_jax.load_prompts(adapter).task_names == ("task_0", "task_1", "task_2")
  by_list = mpt_jax.load_prompts(adapter, task_names=["rte", "mrpc", "cola"])
  by_mapping = mpt_jax.load_prompts(adapter, task_names={"task_2": "cola", "task_0": "rte"})
  assert by_list.task_names == ("rte", "mrpc", "cola")
  assert by_mapping.task_names == ("rte", "task_1", "cola")
  np.testing.assert_array_equal(by_list.prompt("cola"), by_mapping.prompt("cola"))
  with pytest.raises(ValueError, match="peft_mpt_r1: 2 task names given for a prompt with 3"):
    mpt_jax.load_prompts(adapter, task_names=["rte", "mrpc"])
  with pytest.raises(ValueError, match="Unknown task 'task_7'"):
    mpt_jax.load_prompts(adapter, task_names={"task_7": "rte"})
  with pytest.raises(ValueError, match="must be distinct"):
    mpt_jax.load_prompts(adapter, task_names={"task_1": "task_0"})


@pytest.mark.parametrize("kind", ["bank", "merged", "per_task_p_star"])
def test_a_folder_of_per_task_adapters_loads_back_as_one_prompt_set(tmp_path, kind):
  rng = np.random.default_rng(0)
  names = ["rte", "cb", "anli"]  # not alphabetical: the order comes from the folder's index
  if kind == "per_task_p_star":
    original = PromptSet("decomposed", {prompts.SHARED: rng.normal(size=(3, 4, 6)),
                                        prompts.TASK_COLS: rng.normal(size=(3, 4, 2)),
                                        prompts.TASK_ROWS: rng.normal(size=(3, 2, 6))}, names)
  else:
    original = PromptSet(kind, {"prompts": rng.normal(size=(3, 4, 6))}, names)
  mpt_jax.export_peft(original, tmp_path)
  back = mpt_jax.load_prompts(tmp_path)
  assert back.task_names == tuple(names)
  assert back.kind == ("decomposed" if kind == "per_task_p_star" else "bank")
  np.testing.assert_allclose(back.merged(), original.merged(), rtol=1e-6)
  # Without the index, the folder's adapters are taken in name order.
  (tmp_path / "mpt_jax_tasks.json").unlink()
  assert mpt_jax.load_prompts(tmp_path).task_names == ("anli", "cb", "rte")


def test_a_folder_of_mismatched_adapters_is_refused_naming_each(tmp_path):
  mpt_jax.export_peft(PromptSet("single", {"prompt": np.ones((4, 6))}, ["rte"]),
                      tmp_path / "rte")
  mpt_jax.export_peft(PromptSet("single", {"prompt": np.ones((5, 6))}, ["cb"]),
                      tmp_path / "cb")
  with pytest.raises(ValueError, match=r"cannot form one prompt set.*cb: single, 1 task\(s\), "
                                       r"l=5.*rte: single, 1 task\(s\), l=4"):
    mpt_jax.load_prompts(tmp_path)
