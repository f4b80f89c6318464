"""The run setup: backbone and teacher bank placed, model overrides, the prompt file's facts."""

import re

import flax
import jax
from jax.sharding import PartitionSpec
import numpy as np
import pytest

from mpt_jax.model import models
from mpt_jax.prompts import modules as prompts
from mpt_jax.prompts.prompt_set import PromptSet
from mpt_jax.runtime import setup as setup_lib
from mpt_jax.runtime.configs import ModelConfig
from mpt_jax.runtime.partitioning import Partitioner
from tests import helpers

TASKS = ["toy_vowel", "toy_first", "toy_upper"]


def _bank(backbone, num_tasks=3, length=4):
  return prompts.PromptBank(num_tasks, length, backbone.config.d_model,
                            initializer=jax.nn.initializers.normal(1.0))


def test_the_backbone_is_placed_on_the_mesh_by_its_logical_axes(hf_t5_1_1):
  setup = setup_lib.build_setup(hf_t5_1_1, TASKS, _bank(hf_t5_1_1), ModelConfig(),
                                Partitioner())
  assert "teacher_prompt" not in setup.frozen and "prompt" not in setup.frozen
  placed = flax.traverse_util.flatten_dict(setup.frozen, sep="/")
  original = flax.traverse_util.flatten_dict(hf_t5_1_1.params, sep="/")
  assert set(placed) == set(original)
  for name, value in placed.items():
    assert isinstance(value, jax.Array), name
    np.testing.assert_array_equal(np.asarray(value), original[name], err_msg=name)
  specs = jax.tree.map(lambda s: s.spec, setup.frozen_shardings)
  assert specs["encoder"]["layers_0"]["mlp"]["wi_0"]["kernel"] == PartitionSpec(None, "model")
  assert specs["token_embedder"]["embedding"] == PartitionSpec("model", None)
  assert setup.task_names == TASKS
  assert setup.run_facts == {"backbone": hf_t5_1_1.source,
                             "backbone_fingerprint": hf_t5_1_1.fingerprint, "tasks": TASKS}


def test_the_initial_prompt_is_the_modules_init_at_the_seed_with_replicated_axes(hf_t5_1_1):
  module = _bank(hf_t5_1_1)
  setup = setup_lib.build_setup(hf_t5_1_1, TASKS, module, ModelConfig(), Partitioner(),
                                seed=5)
  expected = module.init(jax.random.PRNGKey(5), np.zeros(1, np.int32))["params"]["prompts"]
  assert isinstance(setup.initial_prompt["prompt"]["prompts"], np.ndarray)
  np.testing.assert_array_equal(setup.initial_prompt["prompt"]["prompts"], expected)
  other = setup_lib.build_setup(hf_t5_1_1, TASKS, module, ModelConfig(), Partitioner(),
                                seed=6)
  assert not np.allclose(other.initial_prompt["prompt"]["prompts"], expected)
  assert setup.prompt_shardings["prompt"]["prompts"].spec == PartitionSpec(None, None, None)


def test_a_distillation_run_gets_the_teacher_bank_reordered_to_its_tasks(hf_t5_1_1,
                                                                         reference,
                                                                         tmp_path):
  d = hf_t5_1_1.config.d_model
  bank = np.random.default_rng(0).normal(size=(3, 4, d)).astype(np.float32)
  teachers = PromptSet("bank", {"prompts": bank}, ["toy_upper", "toy_vowel", "toy_first"])
  path = teachers.save(tmp_path / "teachers.safetensors")
  run_tasks = ["toy_vowel", "toy_first"]
  config = ModelConfig(model_cls=models.DistillationModel, teacher_prompts=str(path))
  setup = setup_lib.build_setup(hf_t5_1_1, run_tasks, _bank(hf_t5_1_1, 2), config,
                                Partitioner())
  assert isinstance(setup.model, models.DistillationModel)
  teacher = setup.frozen["teacher_prompt"]["prompts"]
  assert isinstance(teacher, jax.Array)
  np.testing.assert_array_equal(np.asarray(teacher), bank[[1, 2]])
  assert setup.frozen_shardings["teacher_prompt"]["prompts"].spec == PartitionSpec(
      None, None, None)
  # The trainable tree holds the student only; the loss runs with the placed teacher.
  assert set(setup.initial_prompt) == {"prompt"}
  batch = helpers.toy_batch(reference, task_ids=(1, 0, 1))
  _, metrics = setup.model.loss_fn(models.merge(setup.initial_prompt, setup.frozen), batch)
  assert float(metrics["kl"]) > 0


def test_a_teacher_file_missing_a_run_task_is_refused(hf_t5_1_1, tmp_path):
  bank = np.zeros((1, 2, hf_t5_1_1.config.d_model), np.float32)
  path = PromptSet("bank", {"prompts": bank}, ["toy_vowel"]).save(tmp_path / "t.safetensors")
  config = ModelConfig(model_cls=models.DistillationModel, teacher_prompts=str(path))
  with pytest.raises(ValueError, match=r"have no prompt for \['toy_first'\]"):
    setup_lib.build_setup(hf_t5_1_1, ["toy_vowel", "toy_first"], _bank(hf_t5_1_1, 2), config,
                          Partitioner())


@pytest.mark.parametrize("shape", [(2, 2, 32), (2, 4, 16)], ids=["length", "d_model"])
def test_a_teacher_bank_that_does_not_fit_the_student_is_refused_naming_its_file(
    hf_t5_1_1, tmp_path, shape):
  # Distillation compares the teacher's and the student's hidden states position by
  # position: a teacher prompt of another length (or another backbone's d_model) fails
  # only inside the first step, with a bare shape error. It must be refused here.
  assert hf_t5_1_1.config.d_model == 32
  teachers = PromptSet("bank", {"prompts": np.ones(shape, np.float32)},
                       ["toy_vowel", "toy_first"])
  path = teachers.save(tmp_path / "teachers.safetensors")
  config = ModelConfig(model_cls=models.DistillationModel, teacher_prompts=str(path))
  with pytest.raises(ValueError, match=re.escape(str(path))):
    setup_lib.build_setup(hf_t5_1_1, ["toy_vowel", "toy_first"], _bank(hf_t5_1_1, 2), config,
                          Partitioner())


def test_model_config_overrides_reach_the_models_config_only(hf_t5_1_1):
  assert hf_t5_1_1.config.dropout_rate == 0.1 and hf_t5_1_1.config.dtype == "float32"
  config = ModelConfig(dropout_rate=0.0, dtype="bfloat16")
  setup = setup_lib.build_setup(hf_t5_1_1, TASKS, _bank(hf_t5_1_1), config, Partitioner())
  assert setup.model.config.dropout_rate == 0.0  # a falsy override still applies
  assert setup.model.config.dtype == "bfloat16"
  assert setup.model.network.config == setup.model.config
  assert setup.model.config.d_model == hf_t5_1_1.config.d_model
  assert hf_t5_1_1.config.dropout_rate == 0.1 and hf_t5_1_1.config.dtype == "float32"
  plain = setup_lib.build_setup(hf_t5_1_1, TASKS, _bank(hf_t5_1_1), ModelConfig(),
                                Partitioner())
  assert plain.model.config == hf_t5_1_1.config


def test_the_prompt_set_records_kind_tasks_backbone_and_step(hf_t5_1_1):
  d = hf_t5_1_1.config.d_model
  module = prompts.DecomposedPrompt(3, 4, d, rank=2)
  setup = setup_lib.build_setup(hf_t5_1_1, TASKS, module, ModelConfig(), Partitioner())
  trainable = jax.tree.map(lambda x: jax.numpy.asarray(x) + 1.0, setup.initial_prompt)
  prompt_set = setup.prompt_set(trainable, 12, best="average")
  assert prompt_set.kind == "decomposed" and prompt_set.rank == 2
  assert prompt_set.task_names == tuple(TASKS)
  assert prompt_set.metadata == {"step": 12, "backbone": hf_t5_1_1.source,
                                 "backbone_fingerprint": hf_t5_1_1.fingerprint,
                                 "best": "average"}
  assert prompt_set.backbone_config == hf_t5_1_1.config.to_dict()
  for name, value in trainable["prompt"].items():
    np.testing.assert_array_equal(prompt_set.arrays[name], np.asarray(value))
  bank_setup = setup_lib.build_setup(hf_t5_1_1, TASKS, _bank(hf_t5_1_1), ModelConfig(),
                                     Partitioner())
  assert bank_setup.prompt_set(bank_setup.initial_prompt, 0).kind == "bank"
