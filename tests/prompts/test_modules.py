"""The prompt modules: MPT's P* ∘ U_k V_k, the bank, the single prompt, their axes and
kinds, and the host-side task id check."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpt_jax.prompts import modules as prompts


def _init(module, task_ids):
  variables = module.init(jax.random.PRNGKey(0), jnp.asarray(task_ids))
  return variables["params"], variables["params_axes"]


def test_decomposed_prompt_is_shared_times_low_rank_product():
  module = prompts.DecomposedPrompt(num_tasks=3, length=5, embed_dim=8, rank=2,
                                    cols_init=jax.nn.initializers.normal(1.0),
                                    rows_init=jax.nn.initializers.normal(1.0))
  params, axes = _init(module, [0])
  out = module.apply({"params": params}, jnp.array([2, 0, 2]))
  p, u, v = (np.asarray(params[k]) for k in (prompts.SHARED, prompts.TASK_COLS,
                                             prompts.TASK_ROWS))
  for i, task in enumerate([2, 0, 2]):
    np.testing.assert_allclose(out[i], p * (u[task] @ v[task]), rtol=1e-5)
  assert axes[prompts.TASK_COLS + "_axes"].names == ("tasks", "prompt", "rank")
  assert axes[prompts.TASK_ROWS + "_axes"].names == ("tasks", "rank", "embed")


def test_rank_one_is_the_papers_outer_product():
  module = prompts.DecomposedPrompt(num_tasks=2, length=4, embed_dim=6, rank=1,
                                    cols_init=jax.nn.initializers.normal(1.0),
                                    rows_init=jax.nn.initializers.normal(1.0))
  params, _ = _init(module, [0])
  u, v = params[prompts.TASK_COLS][1, :, 0], params[prompts.TASK_ROWS][1, 0]
  expected = params[prompts.SHARED] * np.outer(u, v)
  np.testing.assert_allclose(module.apply({"params": params}, jnp.array([1]))[0], expected,
                             rtol=1e-6)


def test_default_factors_start_every_task_at_the_shared_prompt():
  module = prompts.DecomposedPrompt(num_tasks=3, length=4, embed_dim=6, rank=3)
  params, _ = _init(module, [0])
  out = module.apply({"params": params}, jnp.array([0, 1, 2]))
  for row in out:
    np.testing.assert_allclose(row, params[prompts.SHARED], rtol=1e-6)


def test_bank_gives_each_task_its_own_prompt():
  bank = prompts.PromptBank(num_tasks=3, length=4, embed_dim=6)
  params, axes = _init(bank, [0])
  table = params["prompts"]
  assert not np.allclose(table[0], table[1])  # each task drew its own init
  out = bank.apply({"params": params}, jnp.array([1, 1, 0]))
  np.testing.assert_array_equal(out, table[np.array([1, 1, 0])])
  assert axes["prompts_axes"].names == ("tasks", "prompt", "embed")


def test_single_prompt_broadcasts_over_the_batch():
  single = prompts.SinglePrompt(length=4, embed_dim=6)
  params, _ = _init(single, [0])
  out = single.apply({"params": params}, jnp.array([0, 0, 0]))
  assert out.shape == (3, 4, 6)
  assert np.all(np.abs(params["prompt"]) <= 0.5)


def test_task_ids_are_checked_on_the_host():
  prompts.check_task_ids(np.array([0, 2, 1]), 3)
  with pytest.raises(ValueError, match=r"task_ids \[3, 7\] are out of range.*\[0, 2\]"):
    prompts.check_task_ids(np.array([0, 3, 7]), 3, ["a", "b", "c"])
  with pytest.raises(ValueError, match="out of range"):
    prompts.check_task_ids(np.array([-1]), 3)


def test_each_module_declares_the_kind_its_prompt_file_records():
  assert prompts.SinglePrompt.kind == "single"
  assert prompts.PromptBank.kind == "bank"
  assert prompts.DecomposedPrompt.kind == "decomposed"


def test_merge_decomposed_accepts_one_p_star_or_one_per_task():
  rng = np.random.default_rng(0)
  shared, cols, rows = rng.normal(size=(4, 6)), rng.normal(size=(2, 4, 1)), rng.normal(
      size=(2, 1, 6))
  merged = prompts.merge_decomposed(shared, cols, rows, xp=np)
  np.testing.assert_allclose(merged[1], shared * (cols[1] @ rows[1]))
  per_task = np.stack([shared, 2 * shared])
  np.testing.assert_allclose(prompts.merge_decomposed(per_task, cols, rows, xp=np)[1],
                             2 * merged[1])
