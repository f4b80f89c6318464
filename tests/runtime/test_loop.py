"""The train step and loop: only the prompt is differentiated and optimised, the loop
fetches from the device only on the log and checkpoint cadence, reads batches ahead in
a thread, and stops on a non-finite loss or prompt naming the step and the last
checkpoint, which is never non-finite."""

import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from mpt_jax import train as train_lib
from mpt_jax.model import models
from mpt_jax.prompts import modules as prompts
from mpt_jax.runtime import checkpoints
from mpt_jax.runtime import inputs
from mpt_jax.runtime import loop
from mpt_jax.runtime import optimizers
from mpt_jax.runtime import steps
from mpt_jax.runtime.configs import CheckpointConfig
from mpt_jax.runtime.configs import DataConfig
from tests import helpers


def _train(model_dir, backbone, *, train_steps, log_period, checkpoint_period,
           optimizer=None):
  """A toy run as helpers.train_toy's, logging every `log_period` steps."""
  return train_lib.train(
      str(model_dir), backbone=str(backbone), train_steps=train_steps,
      data=DataConfig("toy_mix", helpers.TOY_LENGTHS, 8), prompt=helpers.bank_prompt(),
      optimizer=optimizer, checkpointing=CheckpointConfig(period=checkpoint_period),
      log_period=log_period)


def _threads_reading_ahead():
  return [t for t in threading.enumerate() if t.name == "BatchesAhead"]


def test_the_step_updates_the_prompt_and_keeps_optimizer_state_for_it_alone(hf_t5_1_1,
                                                                             reference):
  d = hf_t5_1_1.config.d_model
  prompt = prompts.DecomposedPrompt(3, 4, d, rank=2,
                                    cols_init=jax.nn.initializers.normal(1.0),
                                    rows_init=jax.nn.initializers.normal(1.0))
  model = models.PromptTuningModel(hf_t5_1_1.config, prompt)
  trainable = {"prompt": prompt.init(jax.random.PRNGKey(0), jnp.zeros(1, jnp.int32))["params"]}
  optimizer = optimizers.make_optimizer(name="adam", learning_rate=0.1)
  state = steps.TrainState(jnp.int32(0), trainable, optimizer.init(trainable),
                          jax.random.PRNGKey(0))
  step = jax.jit(steps.make_train_step(model, optimizer, use_dropout=False))
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


def _poisoned_at(step: int) -> optax.GradientTransformation:
  """SGD whose update at `step` is NaN: the loss of step + 1 is the first non-finite."""
  def update(updates, count, params=None):
    del params
    return jax.tree.map(lambda u: jnp.where(count + 1 == step, jnp.nan, u), updates), count + 1
  return optax.chain(optax.sgd(0.1),
                     optax.GradientTransformation(lambda _: jnp.int32(0), update))


def test_a_nan_between_log_steps_is_named_at_its_step_and_nothing_after_it_is_saved(
    tmp_path, tiny_backbone_dir):
  # Logs at 4, 8, 12; checkpoints at 3, 6, 9, 12; the loss of step 5 is the first NaN.
  with pytest.raises(loop.NonFiniteLossError,
                     match=r"loss is nan at step 5 .*last checkpoint, step 3, is finite"):
    _train(tmp_path, tiny_backbone_dir, train_steps=12, log_period=4, checkpoint_period=3,
           optimizer=_poisoned_at(4))
  assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["checkpoint_3"]
  assert [row["step"] for row in helpers.logged(tmp_path)] == [4]
  assert not _threads_reading_ahead()


def test_the_loop_fetches_from_the_device_only_at_log_and_checkpoint_steps(
    tmp_path, tiny_backbone_dir, monkeypatch):
  # The loop takes step s's batch just before step s: the batches taken are the step.
  taken, fetches = [0], []  # fetches: (step, whether the metrics were fetched)
  take, get = loop.BatchesAhead.__next__, jax.device_get

  def counting_take(self):
    taken[0] += 1
    return take(self)

  def recording_get(tree):
    if threading.current_thread() is threading.main_thread():
      fetches.append((taken[0], isinstance(tree, dict) and "loss" in tree))
    return get(tree)

  monkeypatch.setattr(loop.BatchesAhead, "__next__", counting_take)
  monkeypatch.setattr(jax, "device_get", recording_get)
  result = _train(tmp_path, tiny_backbone_dir, train_steps=12, log_period=4,
                  checkpoint_period=6)
  assert {step for step, _ in fetches} <= {0, 4, 6, 8, 12}
  assert [step for step, of_metrics in fetches if of_metrics] == [4, 8, 12]
  logged = helpers.logged(tmp_path)
  assert [row["step"] for row in logged] == [4, 8, 12]
  assert all(row["host_examples_per_second"] > 0 for row in logged)
  assert all(isinstance(value, float) for value in result.metrics.values())
  assert result.metrics["loss"] == logged[-1]["loss"]


def test_a_bad_task_id_read_ahead_stops_the_run_with_its_message_and_leaves_no_thread(
    tmp_path, tiny_backbone_dir, monkeypatch):
  read = inputs.MixedBatches.__next__

  def third_out_of_range(self):
    batch = read(self)
    if self.position.step == 3:
      batch = {**batch, "task_ids": batch["task_ids"] + 7}
    return batch

  monkeypatch.setattr(inputs.MixedBatches, "__next__", third_out_of_range)
  with pytest.raises(ValueError, match=r"task_ids \[.*\] are out of range: this run has 3"):
    _train(tmp_path, tiny_backbone_dir, train_steps=6, log_period=1, checkpoint_period=2)
  assert [row["step"] for row in helpers.logged(tmp_path)] == [1, 2]
  assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["checkpoint_2"]
  assert not _threads_reading_ahead()


def test_progress_measures_from_the_end_of_the_first_step_which_compiles():
  progress = loop.Progress()
  progress.step_done(6, tokens=999, examples=99, started=time.time() - 30)  # compilation
  assert progress.first_step_seconds >= 30
  assert progress.rates(6) is None  # nothing measured yet
  for step in range(7, 16):
    progress.step_done(step, tokens=30, examples=3, started=time.time())
  rates = progress.rates(15)
  # The first step's tokens, examples and 30 s count nowhere: 9 steps of 30 tokens since.
  assert (progress.tokens, progress.examples) == (270, 27)
  assert rates["tokens_per_second"] / rates["steps_per_second"] == pytest.approx(30.0)
  assert rates["host_examples_per_second"] / rates["steps_per_second"] == pytest.approx(3.0)
  assert rates["steps_per_second"] > 9 / 30
