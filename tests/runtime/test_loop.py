"""The train step and loop: only the prompt is differentiated and optimised, and the
loop stops on a non-finite loss or prompt naming the step and the last checkpoint,
which is never non-finite."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mpt_jax.model import models
from mpt_jax.prompts import modules as prompts
from mpt_jax.runtime import checkpoints
from mpt_jax.runtime import loop
from mpt_jax.runtime import optimizers
from tests import helpers


def test_the_step_updates_the_prompt_and_keeps_optimizer_state_for_it_alone(hf_t5_1_1,
                                                                             reference):
  d = hf_t5_1_1.config.d_model
  prompt = prompts.DecomposedPrompt(3, 4, d, rank=2,
                                    cols_init=jax.nn.initializers.normal(1.0),
                                    rows_init=jax.nn.initializers.normal(1.0))
  model = models.PromptTuningModel(hf_t5_1_1.config, prompt)
  trainable = {"prompt": prompt.init(jax.random.PRNGKey(0), jnp.zeros(1, jnp.int32))["params"]}
  optimizer = optimizers.make_optimizer(name="adam", learning_rate=0.1)
  state = loop.TrainState(jnp.int32(0), trainable, optimizer.init(trainable),
                          jax.random.PRNGKey(0))
  step = jax.jit(loop.make_train_step(model, optimizer, use_dropout=False))
  new_state, metrics = step(state, hf_t5_1_1.params, helpers.toy_batch(reference))
  assert int(new_state.step) == 1 and set(new_state.params) == {"prompt"}
  for name in (prompts.SHARED, prompts.TASK_COLS, prompts.TASK_ROWS):
    assert not np.allclose(new_state.params["prompt"][name], trainable["prompt"][name])
  # Adam keeps two moments per trainable value: the backbone has none.
  prompt_size = sum(x.size for x in jax.tree.leaves(trainable))
  assert sum(x.size for x in jax.tree.leaves(new_state.opt_state)) <= 2 * prompt_size + 8
  assert float(metrics["grad_norm"]) > 0 and np.isfinite(float(metrics["loss"]))


def test_a_nan_loss_stops_training_naming_the_step_and_last_checkpoint(tmp_path,
                                                                      tiny_backbone_dir):
  helpers.train_toy(tmp_path, tiny_backbone_dir, train_steps=10)
  exploding = optimizers.make_optimizer(learning_rate=1e35)
  with pytest.raises(loop.NonFiniteLossError,
                     match=r"loss is nan at step 1[1-9] .*last checkpoint, step 10, is finite"):
    helpers.train_toy(tmp_path, tiny_backbone_dir, train_steps=20, optimizer=exploding)
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint_10"]


def test_a_checkpoint_every_step_never_saves_a_non_finite_state(tmp_path, tiny_backbone_dir):
  helpers.train_toy(tmp_path, tiny_backbone_dir, train_steps=4, checkpoint_period=1)
  exploding = optimizers.make_optimizer(learning_rate=1e35)
  with pytest.raises(loop.NonFiniteLossError, match="not finite|loss is") as error:
    helpers.train_toy(tmp_path, tiny_backbone_dir, train_steps=20, checkpoint_period=1,
                      optimizer=exploding)
  saved = checkpoints.RunCheckpoints(tmp_path / "checkpoints")
  assert f"last checkpoint, step {saved.latest_step()}, is finite" in str(error.value)
  assert saved.latest_step() > 4  # it saved steps of the exploding run, all finite
  for step in saved.manager.all_steps():
    state = saved.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))["state"]
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state))


def test_progress_measures_from_the_end_of_the_first_step_which_compiles():
  progress = loop.Progress()
  progress.step_done(6, tokens=999, started=time.time() - 30)  # 30 s: compilation
  assert progress.first_step_seconds >= 30
  assert progress.rates(6) is None  # nothing measured yet
  for step in range(7, 16):
    progress.step_done(step, tokens=30, started=time.time())
  steps_per_second, tokens_per_second = progress.rates(15)
  # The first step's 999 tokens and 30 s count nowhere: 9 steps of 30 tokens since.
  assert progress.tokens == 270
  assert tokens_per_second / steps_per_second == pytest.approx(30.0)
  assert steps_per_second > 9 / 30
