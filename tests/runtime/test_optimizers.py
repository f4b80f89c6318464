"""Optimisers over the prompt: two learning rates by parameter group, state for the
prompt only, and the learning-rate schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mpt_jax.prompts import modules as prompts
from mpt_jax.runtime import optimizers

NUM_TASKS, LENGTH = 3, 4


def test_two_speed_learning_rates_apply_to_the_right_parameters():
  params = {"prompt": {prompts.SHARED: jnp.ones((LENGTH, 6)),
                       prompts.TASK_COLS: jnp.ones((2, LENGTH, 1)),
                       prompts.TASK_ROWS: jnp.ones((2, 1, 6))}}
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.5), params)
  optimizer = optimizers.make_optimizer(
      name="adam", learning_rate=1.0, clip_norm=None,
      group_learning_rates={prompts.SHARED: 0.3, prompts.TASK_COLS: 0.4,
                            prompts.TASK_ROWS: 0.4})
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  moved = jax.tree.map(lambda u: float(jnp.abs(u).max()), updates)["prompt"]
  # Adam's first step moves every parameter by its learning rate.
  assert moved[prompts.SHARED] == pytest.approx(0.3, rel=1e-4)
  assert moved[prompts.TASK_COLS] == pytest.approx(0.4, rel=1e-4)
  assert moved[prompts.TASK_ROWS] == pytest.approx(0.4, rel=1e-4)
  labels = optimizers.group_labels(params, {prompts.SHARED: 0.3})
  assert labels["prompt"][prompts.TASK_COLS] == optimizers.DEFAULT_GROUP


def test_optax_state_exists_for_the_prompt_only(hf_t5_1_1):
  optimizer = optimizers.make_optimizer()
  prompt = {"prompt": {"prompts": jnp.zeros((NUM_TASKS, LENGTH, hf_t5_1_1.config.d_model))}}
  state_size = sum(x.size for x in jax.tree.leaves(optimizer.init(prompt)))
  backbone_size = sum(np.size(x) for x in jax.tree.leaves(hf_t5_1_1.params))
  assert state_size < backbone_size / 10
  assert isinstance(optimizer, optax.GradientTransformation)