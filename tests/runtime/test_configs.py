"""The settings groups: gin bindings reach them, arguments win, missing fields are named."""

import dataclasses

import gin
import pytest

from mpt_jax.model import models
from mpt_jax.runtime.configs import CheckpointConfig
from mpt_jax.runtime.configs import DataConfig
from mpt_jax.runtime.configs import EvalConfig
from mpt_jax.runtime.configs import ModelConfig

LENGTHS = {"inputs": 8, "targets": 4}


@pytest.fixture
def clean_gin():
  gin.clear_config()
  try:
    yield
  finally:
    gin.clear_config()


@gin.configurable
def configs_test_command(data=None, checkpointing=None):
  """Like train(): builds its groups itself when not given them."""
  return data or DataConfig(), checkpointing or CheckpointConfig()


def test_gin_bindings_reach_groups_built_without_arguments(clean_gin):
  gin.parse_config("""
      DataConfig.mixture_or_task_name = 'toy_mix'
      DataConfig.task_feature_lengths = {'inputs': 8, 'targets': 4}
      DataConfig.batch_size = 32
      DataConfig.stochastic_task_sampling = True
      CheckpointConfig.period = 7
  """)
  data, checkpointing = configs_test_command()
  assert data == DataConfig("toy_mix", LENGTHS, 32, stochastic_task_sampling=True)
  assert (checkpointing.period, checkpointing.keep) == (7, 3)


def test_gin_bindings_reach_groups_built_by_gin_references(clean_gin):
  gin.parse_config("""
      configs_test_command.data = @DataConfig()
      DataConfig.mixture_or_task_name = 'toy_vowel'
      DataConfig.task_feature_lengths = {'inputs': 8, 'targets': 4}
      DataConfig.batch_size = 4
      ModelConfig.model_cls = @DistillationModel
      ModelConfig.dropout_rate = 0.0
      EvalConfig.best_metric = 'toy_vowel/accuracy'
      EvalConfig.tasks = ['toy_vowel']
  """)
  data, _ = configs_test_command()
  assert (data.mixture_or_task_name, data.batch_size) == ("toy_vowel", 4)
  model = ModelConfig()
  assert model.model_cls is models.DistillationModel and model.dropout_rate == 0.0
  evaluation = EvalConfig()
  assert evaluation.best_metric == "toy_vowel/accuracy" and list(evaluation.tasks) == [
      "toy_vowel"]
  assert evaluation.period == 0 and evaluation.split == "validation"


def test_explicit_arguments_win_over_gin_bindings(clean_gin):
  gin.parse_config(["DataConfig.batch_size = 32", "EvalConfig.period = 5"])
  assert DataConfig("toy_mix", LENGTHS, 4).batch_size == 4
  assert EvalConfig(period=9).period == 9
  assert EvalConfig().period == 5


def test_without_bindings_the_groups_have_their_documented_defaults(clean_gin):
  assert ModelConfig() == ModelConfig(models.PromptTuningModel, None, None, None)
  assert CheckpointConfig() == CheckpointConfig(period=100, keep=3)
  evaluation = EvalConfig()
  assert (evaluation.period, evaluation.split, evaluation.best_metric) == (
      0, "validation", "average")
  data = DataConfig("toy_mix", LENGTHS, 8)
  assert (data.stochastic_task_sampling, data.max_tasks_per_batch, data.examples_cap) == (
      False, None, None)


@pytest.mark.parametrize("missing", ["mixture_or_task_name", "task_feature_lengths",
                                     "batch_size"])
def test_a_missing_required_data_field_is_an_error_naming_it(clean_gin, missing):
  given = {"mixture_or_task_name": "toy_mix", "task_feature_lengths": LENGTHS,
           "batch_size": 8}
  del given[missing]
  with pytest.raises(RuntimeError,
                     match=rf"Required bindings for `DataConfig` not provided.*'{missing}'"):
    DataConfig(**given)


def test_the_groups_are_frozen(clean_gin):
  data = DataConfig("toy_mix", LENGTHS, 8)
  with pytest.raises(dataclasses.FrozenInstanceError):
    data.batch_size = 16  # pytype: disable=attribute-error
