"""mpt_jax/t5x/actions.py: `WritePromptFiles` saves the trained prompt as mpt_jax prompt
files (prompts/step_N.safetensors and prompts.safetensors) with the kind the model's
prompt module declares and the run's task names in task-id order, on process 0 only;
and base.gin hands it the very model object t5x trains. Skipped where t5x is not
installed."""

import copy
import dataclasses
import pathlib
import sys
from typing import Any

import jax
import numpy as np
import pytest

pytest.importorskip(
    "t5x.train", reason="t5x is not importable: it is not on PyPI; install it from "
    "github.com/google-research/t5x to run the t5x adapter's tests.")

# pylint: disable=g-import-not-at-top
import gin
import seqio
import t5x
from t5x import adafactor
from t5x import gin_utils
from t5x import train as t5x_train

import mpt_jax
from mpt_jax.model import models
from mpt_jax.prompts import modules as prompts
from mpt_jax.t5x import actions
from mpt_jax.t5x import models as t5x_wrapper
from tests import helpers

TOY_MIX_ORDER = ("toy_first", "toy_upper", "toy_vowel")  # seqio sorts a mixture's tasks
PROMPTS = {  # each kind of prompt module, for `num_tasks` tasks of width `d`
    "single": lambda num_tasks, d: prompts.SinglePrompt(4, d),
    "bank": lambda num_tasks, d: prompts.PromptBank(num_tasks, 4, d),
    "decomposed": lambda num_tasks, d: prompts.DecomposedPrompt(num_tasks, 4, d, rank=2),
}


@dataclasses.dataclass
class FakeTrainState:
  """What the action reads of t5x's train state."""
  step: Any
  params: Any


def _wrapper(kind, num_tasks=3):
  config = mpt_jax.named_config("t5_1_1_tiny", **helpers.TINY)
  mpt = models.PromptTuningModel(config, PROMPTS[kind](num_tasks, config.d_model))
  return t5x_wrapper.MptEncoderDecoderModel(
      mpt, seqio.ByteVocabulary(), seqio.ByteVocabulary(), adafactor.Adafactor())


def _train_state(wrapper, step, seed=0):
  variables = wrapper.mpt.init_variables(jax.random.PRNGKey(seed))
  return FakeTrainState(step=np.asarray(step, np.int32), params=variables["params"])


def _action(model_dir, wrapper, mixture="toy_mix"):
  return actions.WritePromptFiles(str(model_dir), wrapper, mixture, ["tests.toy_tasks"])


@pytest.mark.parametrize("kind", sorted(PROMPTS))
def test_write_prompt_files_saves_the_prompt_with_the_kind_of_the_models_prompt(
    tmp_path, kind):
  wrapper = _wrapper(kind)
  state = _train_state(wrapper, step=5)
  assert _action(tmp_path, wrapper).run(state, {}) is False  # never stops training
  for path in (tmp_path / "prompts" / "step_5.safetensors", tmp_path / "prompts.safetensors"):
    saved = mpt_jax.load_prompts(path)
    assert saved.kind == kind
    assert saved.task_names == TOY_MIX_ORDER
    assert saved.metadata["step"] == 5 and saved.metadata["runtime"] == "t5x"
    assert saved.backbone_config["d_model"] == helpers.TINY["d_model"]
    assert set(saved.arrays) == set(state.params["prompt"])
    for name, value in state.params["prompt"].items():
      np.testing.assert_array_equal(saved.arrays[name], np.asarray(value), err_msg=name)


def test_each_period_adds_a_step_file_and_replaces_the_final_file(tmp_path):
  wrapper = _wrapper("bank")
  action = _action(tmp_path, wrapper)
  first, second = _train_state(wrapper, 3, seed=0), _train_state(wrapper, 6, seed=1)
  action.run(first, {})
  action.run(second, {})
  assert sorted(p.name for p in (tmp_path / "prompts").iterdir()) == [
      "step_3.safetensors", "step_6.safetensors"]
  step_3 = mpt_jax.load_prompts(tmp_path / "prompts" / "step_3.safetensors")
  final = mpt_jax.load_prompts(tmp_path / "prompts.safetensors")
  np.testing.assert_array_equal(step_3.arrays["prompts"], first.params["prompt"]["prompts"])
  np.testing.assert_array_equal(final.arrays["prompts"], second.params["prompt"]["prompts"])
  assert final.metadata["step"] == 6


def test_task_names_follow_the_runs_task_list(tmp_path):
  wrapper = _wrapper("decomposed", num_tasks=2)
  _action(tmp_path, wrapper, mixture="toy_targets").run(_train_state(wrapper, 1), {})
  saved = mpt_jax.load_prompts(tmp_path / "prompts.safetensors")
  assert saved.task_names == ("toy_first", "toy_vowel")


def test_only_process_zero_writes(tmp_path, monkeypatch):
  wrapper = _wrapper("bank")
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  assert _action(tmp_path, wrapper).run(_train_state(wrapper, 2), {}) is False
  assert not list(tmp_path.iterdir())


def test_base_gin_gives_the_action_the_model_that_t5x_trains(tmp_path, monkeypatch):
  # base.gin binds `train_script.train` through `import __main__`, as t5x.train runs;
  # t5x.train searches the repository root and t5x's parent folder (finetune.gin).
  monkeypatch.setattr(sys.modules["__main__"], "train", t5x_train.train, raising=False)
  try:
    gin_utils.parse_gin_flags(
        [str(helpers.ROOT), str(pathlib.Path(t5x.__file__).parent.parent)],
        ["mpt_jax/t5x/gin/teachers.gin", "mpt_jax/t5x/gin/tiny.gin"],
        [f"MODEL_DIR='{tmp_path}'", "BASE_MIXTURE='toy_mix'",
         "TASK_MODULES=['tests.toy_tasks']", "TRAIN_STEPS=1",
         "TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 4}"])
    # Evaluates `train.model = %MODEL` as gin does when t5x.train calls train().
    trained = copy.deepcopy(gin.query_parameter("train_script.train.model"))
    action = gin.get_configurable(actions.WritePromptFiles)()
    assert isinstance(trained, t5x_wrapper.MptEncoderDecoderModel)
    assert action.model is trained  # one object, built once by gin.singleton
    assert action.model.mpt.network.prompt.kind == "bank"
    assert action.task_names == list(TOY_MIX_ORDER)
  finally:
    gin.clear_config()
