"""The train loop: a jitted step that differentiates the prompt only, and the loop
that feeds it, logs, checkpoints, evaluates and stops on a non-finite loss.

The backbone (and a distillation run's teacher prompts) is a separate,
non-differentiated argument of the step, so no weight gradient of the frozen model
is ever computed and optimizer state exists for the prompt alone.
"""

import dataclasses
import logging
import math
import time
from typing import Any, Optional

from flax import serialization
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mpt_jax import arrays
from mpt_jax.model import models
from mpt_jax.prompts import modules as prompt_modules
from mpt_jax.prompts.prompt_set import PromptSet
from mpt_jax.runtime import checkpoints as checkpoints_lib
from mpt_jax.runtime import inputs
from mpt_jax.runtime import metric_writers
from mpt_jax.runtime import preemption
from mpt_jax.runtime.configs import CheckpointConfig
from mpt_jax.runtime.model_dir import ModelDir
from mpt_jax.runtime.setup import RunSetup

class NonFiniteLossError(FloatingPointError):
  """The loss or the prompt became NaN or inf; the message names the step and the last
  checkpoint, which is always finite."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any  # the trainable tree: {'prompt': ...}
  opt_state: Any
  rng: jax.Array


def make_train_step(model: models.PromptTuningModel, optimizer: optax.GradientTransformation,
                    use_dropout: bool):
  """step(state, frozen, batch) -> (state, metrics), differentiating `state.params` only."""
  def train_step(state: TrainState, frozen, batch):
    rng = jax.random.fold_in(state.rng, state.step)

    def loss_of(trainable):
      return model.loss_fn(models.merge(trainable, frozen), batch,
                           rng if use_dropout else None)

    (_, metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "grad_norm": optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics
  return train_step


def _eta(seconds: float) -> str:
  seconds = int(seconds)
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
      f"{seconds // 60}m{seconds % 60:02d}s"


@dataclasses.dataclass
class Progress:
  """Steps and tokens since the loop's first step finished. That step's time is mostly
  compilation; counted in, it would skew throughput and the ETA for a long while."""
  first_step_seconds: Optional[float] = None
  start_step: int = 0
  start_time: float = 0.0
  tokens: int = 0

  def step_done(self, step: int, tokens: int, started: float) -> None:
    """Counts a step that began at `started` (time.time()) and has just ended."""
    if self.first_step_seconds is None:
      self.first_step_seconds = time.time() - started
      self.start_step, self.start_time = step, time.time()
    else:
      self.tokens += tokens

  def rates(self, step: int) -> Optional[tuple[float, float]]:
    """(steps/s, tokens/s) since the first step; None before any step is measured."""
    if self.first_step_seconds is None or step <= self.start_step:
      return None
    elapsed = max(time.time() - self.start_time, 1e-9)
    return (step - self.start_step) / elapsed, self.tokens / elapsed


class TrainLoop:
  """Owns the train state of one run: starts or resumes it, steps it, saves it."""

  def __init__(self, setup: RunSetup, optimizer: optax.GradientTransformation,
               model_dir: ModelDir, checkpointing: CheckpointConfig, seed: int):
    self.setup = setup
    self.model_dir = model_dir
    self.checkpoint_period = checkpointing.period
    self.seed = seed
    replicated = setup.partitioner.replicated
    self.abstract_state = jax.eval_shape(lambda p: TrainState(
        jnp.int32(0), p, optimizer.init(p), jax.random.PRNGKey(seed)), setup.initial_prompt)
    # The prompt and its optimizer state are small: the prompt follows its axes, the
    # optimizer state is replicated.
    self.shardings = TrainState(
        replicated, setup.prompt_shardings,
        jax.tree.map(lambda _: replicated, self.abstract_state.opt_state), replicated)
    self.optimizer = optimizer
    self.step_fn = jax.jit(
        make_train_step(setup.model, optimizer, setup.model.config.dropout_rate > 0),
        in_shardings=(self.shardings, setup.frozen_shardings,
                      setup.partitioner.batch_sharding),
        out_shardings=(self.shardings, replicated), donate_argnums=(0,))
    self.checkpoints = checkpoints_lib.RunCheckpoints(model_dir.checkpoints,
                                                      keep=checkpointing.keep)
    self.last_checkpoint = None
    self.state = None

  def start(self) -> Optional[inputs.DataPosition]:
    """Restores the newest good checkpoint (returning its data position) or starts
    afresh. Call it holding the run's lock: a damaged checkpoint is moved aside."""
    partitioner = self.setup.partitioner
    restored = self.checkpoints.restore_latest(
        serialization.to_state_dict(self.abstract_state), self.setup.run_facts)
    if restored is None:
      initial = self.setup.initial_prompt
      self.state = partitioner.place(
          TrainState(np.int32(0), initial, self.optimizer.init(initial),
                     np.asarray(jax.random.PRNGKey(self.seed))), self.shardings)
      return None
    self.last_checkpoint, saved, data = restored
    self.state = partitioner.place(
        serialization.from_state_dict(self.abstract_state, saved), self.shardings)
    logging.info("Resuming %s from step %d", self.model_dir, self.last_checkpoint)
    return inputs.DataPosition.from_json(data)

  def save(self, step: int, position: dict) -> None:
    """Saves the state at `step`, refusing a non-finite one: every checkpoint can be
    resumed from."""
    host = jax.device_get(self.state)
    bad = arrays.non_finite(arrays.by_path((host.params, host.opt_state)))
    if bad:
      raise NonFiniteLossError(
          f"The prompt or its optimizer state is not finite at step {step} of "
          f"{self.model_dir} ({', '.join(bad[:3])}), so it was not saved. "
          f"{self._last_good()} Lower the learning rate or check the data, then rerun.")
    self.checkpoints.save(step, serialization.to_state_dict(host), position,
                          self.setup.run_facts)
    self.checkpoints.wait()
    self.last_checkpoint = step
    if jax.process_index() == 0:
      self.setup.prompt_set(host.params, step).save(self.model_dir.step_prompts(step))

  def _last_good(self) -> str:
    if self.last_checkpoint is None:
      return "No checkpoint was saved yet."
    return (f"The last checkpoint, step {self.last_checkpoint}, is finite; a rerun resumes "
            "from it.")

  def _check_finite(self, loss: float, step: int) -> None:
    if not math.isfinite(loss):
      raise NonFiniteLossError(
          f"The loss is {loss} at step {step} of {self.model_dir}; nothing after the last "
          f"checkpoint was saved. {self._last_good()} Lower the learning rate or check "
          "the data, then rerun.")

  @staticmethod
  def _log(writer, step: int, train_steps: int, metrics: dict, progress: Progress) -> None:
    rates = progress.rates(step)
    if rates is None:  # only the first step, mostly compilation, has run
      writer.write_scalars(step, metrics)
      logging.info("step %d/%d  loss %.4f  (first step, with compilation: %.1f s)", step,
                   train_steps, metrics["loss"], progress.first_step_seconds)
      return
    metrics.update(steps_per_second=rates[0], tokens_per_second=rates[1])
    writer.write_scalars(step, metrics)
    logging.info("step %d/%d  loss %.4f  %.2f steps/s  %.0f tokens/s  ETA %s", step,
                 train_steps, metrics["loss"], rates[0], rates[1],
                 _eta((train_steps - step) / max(rates[0], 1e-9)))

  def run(self, batches: inputs.MixedBatches, train_steps: int, log_period: int,
          dev_evaluation=None) -> tuple[dict, PromptSet]:
    """Trains to `train_steps`; returns the last step's metrics (and eval results) and
    the final prompt. Raises `preemption.Preempted` after saving when asked to stop."""
    watch = preemption.PreemptionWatch()
    try:
      return self._run(batches, train_steps, log_period, dev_evaluation, watch)
    finally:
      watch.close()

  def _run(self, batches, train_steps, log_period, dev_evaluation,
           watch: preemption.PreemptionWatch) -> tuple[dict, PromptSet]:
    setup = self.setup
    writer = metric_writers.create_writer(self.model_dir.path, "train")
    step = int(jax.device_get(self.state.step))
    progress = Progress()
    metrics, position = {}, batches.position.to_json()
    if dev_evaluation and step == 0:  # where each method starts, for the curves
      metrics["eval"] = dev_evaluation(self.state.params, 0)
    while step < train_steps:
      started = time.time()
      local = next(batches)
      prompt_modules.check_task_ids(local["task_ids"], len(setup.task_names),
                                    setup.task_names)
      position = batches.position.to_json()
      self.state, step_metrics = self.step_fn(self.state, setup.frozen,
                                              setup.partitioner.global_batch(local))
      step += 1
      metrics = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
      self._check_finite(metrics["loss"], step)
      progress.step_done(step, int((local["encoder_input_tokens"] > 0).sum() +
                                   local["decoder_loss_weights"].sum()) * jax.process_count(),
                         started)
      if step % log_period == 0 or step == train_steps:
        self._log(writer, step, train_steps, metrics, progress)
      if (self.checkpoint_period and step % self.checkpoint_period == 0 or
          step == train_steps):
        self.save(step, position)
      if dev_evaluation and (step % dev_evaluation.period == 0 or step == train_steps):
        metrics["eval"] = dev_evaluation(self.state.params, step)
      if watch.should_stop(step) and step < train_steps:
        if self.last_checkpoint != step:
          self.save(step, position)
        writer.close()
        raise preemption.Preempted(step, self.model_dir)
    final = setup.prompt_set(self.state.params, step)
    if jax.process_index() == 0:
      final.save(self.model_dir.final_prompts)
    writer.close()
    return metrics, final

  def close(self) -> None:
    self.checkpoints.close()
