"""The gin factories: each prompt kind and initialisation a run can ask for, SPoT and
MPT transfer from saved prompts, and the module that holds a saved prompt."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mpt_jax
from mpt_jax.prompts import factories
from mpt_jax.prompts import modules as prompts
from tests import helpers

LENGTH = 4


class _FakeBackbone:
  def __init__(self, d):
    self.config = mpt_jax.T5Config(d_model=d)


def test_single_prompt_from_a_file_gives_every_task_the_named_source_prompt(tmp_path):
  source, path = _source_file(tmp_path)
  module = factories.single_prompt(_FakeBackbone(6), ["t0", "t1"], length=LENGTH,
                                       init="file", init_prompts=str(path), init_task="t3")
  ids = jnp.array([0, 1], jnp.int32)
  out = np.asarray(module.apply(module.init(jax.random.PRNGKey(0), ids), ids))
  np.testing.assert_allclose(out, np.stack([source.prompt("t3")] * 2), rtol=1e-5)


def _source_file(tmp_path):
  source = helpers.decomposed_set(num_tasks=6, l=LENGTH)
  return source, source.save(tmp_path / "distill.safetensors")


@pytest.mark.parametrize("shared_per_task", [False, True])
def test_adaptation_starts_at_p_star_and_the_mean_u_v(tmp_path, shared_per_task):
  source, path = _source_file(tmp_path)
  module = factories.decomposed_prompt(_FakeBackbone(6), ["t0", "t1"], length=LENGTH,
                                           source=str(path), shared_per_task=shared_per_task)
  assert module.rank == 2
  params = module.init(jax.random.PRNGKey(0), jnp.zeros((1,), jnp.int32))["params"]
  shared = np.asarray(params[prompts.SHARED])
  expected_shared = source.arrays[prompts.SHARED]
  if shared_per_task:
    assert shared.shape == (2, LENGTH, 6)
    expected_shared = np.stack([expected_shared] * 2)
  np.testing.assert_allclose(shared, expected_shared, rtol=1e-6)
  for name in (prompts.TASK_COLS, prompts.TASK_ROWS):
    mean = source.arrays[name].mean(axis=0)
    np.testing.assert_allclose(params[name], np.stack([mean, mean]), rtol=1e-6)
  prompt = module.apply({"params": params}, jnp.array([1]))[0]
  np.testing.assert_allclose(prompt, source.arrays[prompts.SHARED] * (
      source.arrays[prompts.TASK_COLS].mean(0) @ source.arrays[prompts.TASK_ROWS].mean(0)),
                             rtol=1e-5)


@pytest.mark.parametrize("kind", ["single", "bank", "decomposed"])
def test_module_for_a_saved_prompt_starts_as_the_saved_prompt(kind):
  rng = np.random.default_rng(0)
  saved = {"single": mpt_jax.PromptSet("single", {"prompt": rng.normal(size=(4, 6))}, ["a"]),
           "bank": mpt_jax.PromptSet("bank", {"prompts": rng.normal(size=(2, 4, 6))},
                                     ["a", "b"]),
           "decomposed": helpers.decomposed_set(num_tasks=2)}[kind]
  module = factories.module_for(saved)
  assert module.kind == kind
  ids = jnp.arange(saved.num_tasks)
  out = module.apply(module.init(jax.random.PRNGKey(0), ids), ids)
  np.testing.assert_allclose(out, saved.merged(), rtol=1e-6)


def test_teacher_bank_is_reordered_to_the_runs_tasks(tmp_path):
  teachers = mpt_jax.PromptSet("bank", {"prompts": np.arange(3 * 4 * 6.0).reshape(3, 4, 6)},
                               ["a", "b", "c"])
  path = teachers.save(tmp_path / "teachers.safetensors")
  bank = factories.teacher_bank(str(path), ["c", "a"])
  ids = jnp.array([0, 1])
  out = bank.apply(bank.init(jax.random.PRNGKey(0), ids), ids)
  np.testing.assert_allclose(out, teachers.merged()[[2, 0]])
  with pytest.raises(ValueError, match=r"no prompt for \['d'\]"):
    factories.teacher_bank(str(path), ["a", "d"])
