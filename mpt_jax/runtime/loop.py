"""The train loop: a jitted step that differentiates the prompt only, and the loop
that feeds it, logs, checkpoints, evaluates and stops on a non-finite loss.

The backbone (and a distillation run's teacher prompts) is a separate,
non-differentiated argument of the step, so no weight gradient of the frozen model
is ever computed and optimizer state exists for the prompt alone.

The host never waits for the device between log steps: batches are read, checked and
transferred ahead in a thread, the metrics stay on the device until a log step, and
the first non-finite loss is recorded on the device and checked on the log cadence
and before every checkpoint or evaluation.
"""

import contextlib
import dataclasses
import logging
import queue
import threading
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
from mpt_jax.runtime.partitioning import Partitioner
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


def initial_train_state(trainable, optimizer: optax.GradientTransformation,
                        seed: int) -> TrainState:
  """Step 0: the trainable tree, its fresh optimizer state and the run's dropout key."""
  return TrainState(jnp.int32(0), trainable, optimizer.init(trainable),
                    jax.random.PRNGKey(seed))


def abstract_train_state(initial_trainable, optimizer: optax.GradientTransformation,
                         seed: int) -> TrainState:
  """The train state's shapes and dtypes, from the trainable tree's (arrays or shapes)."""
  return jax.eval_shape(lambda p: initial_train_state(p, optimizer, seed), initial_trainable)


def train_state_shardings(partitioner: Partitioner, abstract_state: TrainState,
                          prompt_shardings) -> TrainState:
  """The prompt and its optimizer state are small: the prompt follows its axes, the
  optimizer state is replicated."""
  replicated = partitioner.replicated
  return TrainState(replicated, prompt_shardings,
                    jax.tree.map(lambda _: replicated, abstract_state.opt_state), replicated)


@flax.struct.dataclass
class FirstNonFinite:
  """The first step whose loss was not finite (0: none yet) and that loss. Carried from
  step to step on the device, so no step's loss has to be fetched to notice it."""
  step: jax.Array
  loss: jax.Array

  @staticmethod
  def replicated(partitioner: Partitioner) -> "FirstNonFinite":
    return FirstNonFinite(partitioner.replicated, partitioner.replicated)


def make_guarded_step(train_step):
  """step(state, frozen, batch, first) -> (state, metrics, first): `train_step` that
  also updates a `FirstNonFinite`, in the same jitted computation."""
  def guarded_step(state, frozen, batch, first: FirstNonFinite):
    state, metrics = train_step(state, frozen, batch)
    new = (first.step == 0) & ~jnp.isfinite(metrics["loss"])
    return state, metrics, FirstNonFinite(jnp.where(new, state.step, first.step),
                                          jnp.where(new, metrics["loss"], first.loss))
  return guarded_step


def jit_train_step(model: models.PromptTuningModel, optimizer: optax.GradientTransformation,
                   partitioner: Partitioner, state_shardings: TrainState, frozen_shardings):
  """The loop's step jitted over the mesh, the state donated: (state, frozen, batch,
  FirstNonFinite) -> (state, metrics, FirstNonFinite). `python -m mpt_jax.aot` compiles
  this same function for TPU topologies."""
  replicated, guard = partitioner.replicated, FirstNonFinite.replicated(partitioner)
  step = make_guarded_step(make_train_step(model, optimizer, model.config.dropout_rate > 0))
  return partitioner.jit(
      step, in_shardings=(state_shardings, frozen_shardings, partitioner.batch_sharding, guard),
      out_shardings=(state_shardings, replicated, guard), donate_argnums=(0,))


@dataclasses.dataclass
class PreparedBatch:
  """A batch on the devices, with what the host keeps of it: the data position just
  after it (a checkpoint at its step resumes from there) and its size for progress."""
  arrays: dict
  position: dict
  tokens: int  # all hosts' non-padding input and target tokens
  examples: int  # this host's


@dataclasses.dataclass
class _Failed:
  """What BatchesAhead's thread raised, queued in its batch's place for the main thread."""
  error: BaseException


class BatchesAhead:
  """Prepares the next `count` batches of `batches` in a thread, up to `depth` ahead,
  so reading, checking and transferring a batch overlap the device's steps.

  `prepare(batch, position)` runs right after each `next(batches)`, so `position` is
  that batch's. An error there or in `next` is raised by the `next()` that would have
  returned the batch, and nothing is prepared after it. Close it to stop the thread.
  """

  def __init__(self, batches, count: int, prepare, depth: int = 2):
    self._queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._fill, args=(batches, count, prepare),
                                    name="BatchesAhead", daemon=True)
    self._thread.start()

  def _fill(self, batches, count: int, prepare) -> None:
    for _ in range(count):
      if self._stop.is_set():
        return
      try:
        item = prepare(next(batches), batches.position.to_json())
      except BaseException as error:  # pylint: disable=broad-except  (raised by __next__)
        self._queue.put(_Failed(error))
        return
      self._queue.put(item)

  def __next__(self) -> PreparedBatch:
    item = self._queue.get()
    if isinstance(item, _Failed):
      raise item.error
    return item

  def close(self) -> None:
    """Stops the thread once the batch it is on is done (emptying the queue so that it
    is never stuck putting one) and waits for it."""
    self._stop.set()
    while self._thread.is_alive():
      with contextlib.suppress(queue.Empty):
        self._queue.get_nowait()
      self._thread.join(timeout=0.05)


def _eta(seconds: float) -> str:
  seconds = int(seconds)
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
      f"{seconds // 60}m{seconds % 60:02d}s"


@dataclasses.dataclass
class Progress:
  """Steps, tokens and examples since the loop's first step finished. That step's time
  is mostly compilation; counted in, it would skew throughput and the ETA for a long
  while."""
  first_step_seconds: Optional[float] = None
  start_step: int = 0
  start_time: float = 0.0
  tokens: int = 0
  examples: int = 0

  def step_done(self, step: int, tokens: int, examples: int, started: float) -> None:
    """Counts a step that began at `started` (time.time()) and has just ended (for the
    first, finished on the device; later ones may still be running there)."""
    if self.first_step_seconds is None:
      self.first_step_seconds = time.time() - started
      self.start_step, self.start_time = step, time.time()
    else:
      self.tokens += tokens
      self.examples += examples

  def rates(self, step: int) -> Optional[dict[str, float]]:
    """Steps/s, tokens/s of all hosts and examples/s of this host since the first step;
    None before any step is measured. Call it after a device sync, so that the steps
    counted have run."""
    if self.first_step_seconds is None or step <= self.start_step:
      return None
    elapsed = max(time.time() - self.start_time, 1e-9)
    return {"steps_per_second": (step - self.start_step) / elapsed,
            "tokens_per_second": self.tokens / elapsed,
            "host_examples_per_second": self.examples / elapsed}


class TrainLoop:
  """Owns the train state of one run: starts or resumes it, steps it, saves it."""

  def __init__(self, setup: RunSetup, optimizer: optax.GradientTransformation,
               model_dir: ModelDir, checkpointing: CheckpointConfig, seed: int):
    self.setup = setup
    self.model_dir = model_dir
    self.checkpoint_period = checkpointing.period
    self.seed = seed
    self.abstract_state = abstract_train_state(setup.initial_prompt, optimizer, seed)
    self.shardings = train_state_shardings(setup.partitioner, self.abstract_state,
                                           setup.prompt_shardings)
    self.optimizer = optimizer
    self.step_fn = jit_train_step(setup.model, optimizer, setup.partitioner, self.shardings,
                                  setup.frozen_shardings)
    self.checkpoints = checkpoints_lib.RunCheckpoints(model_dir.checkpoints,
                                                      keep=checkpointing.keep)
    self.last_checkpoint = None
    self.state = None
    self.first_non_finite = setup.partitioner.place(
        FirstNonFinite(np.int32(0), np.float32(0)), FirstNonFinite.replicated(setup.partitioner))

  def start(self) -> Optional[inputs.DataPosition]:
    """Restores the newest good checkpoint (returning its data position) or starts
    afresh. Call it holding the run's lock: a damaged checkpoint is moved aside."""
    partitioner = self.setup.partitioner
    restored = self.checkpoints.restore_latest(
        serialization.to_state_dict(self.abstract_state), self.setup.run_facts)
    if restored is None:
      self.state = partitioner.place(
          initial_train_state(self.setup.initial_prompt, self.optimizer, self.seed),
          self.shardings)
      return None
    self.last_checkpoint, saved, data = restored
    self.state = partitioner.place(
        serialization.from_state_dict(self.abstract_state, saved), self.shardings)
    logging.info("Resuming %s from step %d", self.model_dir, self.last_checkpoint)
    return inputs.DataPosition.from_json(data)

  def save(self, step: int, position: dict) -> None:
    """Saves the state at `step`, refusing it after a non-finite loss or when it is not
    finite itself: every checkpoint can be resumed from."""
    self._check_finite()
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

  def _check_finite(self) -> None:
    """Raises naming the first step whose loss was not finite, if any step's was (one
    small fetch from the device)."""
    first = jax.device_get(self.first_non_finite)
    if first.step:
      raise NonFiniteLossError(
          f"The loss is {float(first.loss)} at step {int(first.step)} of "
          f"{self.model_dir}; nothing after the last checkpoint was saved. "
          f"{self._last_good()} Lower the learning rate or check the data, then rerun.")

  def _prepare(self, local: dict, position: dict) -> PreparedBatch:
    """Runs in BatchesAhead's thread: checks a batch's task ids and sends it to the
    devices."""
    setup = self.setup
    prompt_modules.check_task_ids(local["task_ids"], len(setup.task_names),
                                  setup.task_names)
    tokens = int((local["encoder_input_tokens"] > 0).sum() +
                 local["decoder_loss_weights"].sum())
    return PreparedBatch(setup.partitioner.global_batch(local), position,
                         tokens * jax.process_count(), len(local["task_ids"]))

  @staticmethod
  def _log(writer, step: int, train_steps: int, metrics: dict, progress: Progress) -> None:
    rates = progress.rates(step)
    if rates is None:  # only the first step, mostly compilation, has run
      writer.write_scalars(step, metrics)
      logging.info("step %d/%d  loss %.4f  (first step, with compilation: %.1f s)", step,
                   train_steps, metrics["loss"], progress.first_step_seconds)
      return
    metrics.update(rates)
    writer.write_scalars(step, metrics)
    logging.info("step %d/%d  loss %.4f  %.2f steps/s  %.0f tokens/s  %.1f examples/s on "
                 "this host  ETA %s", step, train_steps, metrics["loss"],
                 rates["steps_per_second"], rates["tokens_per_second"],
                 rates["host_examples_per_second"],
                 _eta((train_steps - step) / max(rates["steps_per_second"], 1e-9)))

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
    metrics = {}
    if dev_evaluation and step == 0:  # where each method starts, for the curves
      metrics["eval"] = dev_evaluation(self.state.params, 0)
    ahead = BatchesAhead(batches, train_steps - step, self._prepare)
    try:
      while step < train_steps:
        started = time.time()
        batch = next(ahead)
        self.state, step_metrics, self.first_non_finite = self.step_fn(
            self.state, setup.frozen, batch.arrays, self.first_non_finite)
        step += 1
        if progress.first_step_seconds is None:  # its compilation and run, timed apart
          jax.block_until_ready(step_metrics)
        progress.step_done(step, batch.tokens, batch.examples, started)
        if step % log_period == 0 or step == train_steps:
          self._check_finite()
          metrics = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
          self._log(writer, step, train_steps, metrics, progress)
        if (self.checkpoint_period and step % self.checkpoint_period == 0 or
            step == train_steps):
          self.save(step, batch.position)
        if dev_evaluation and (step % dev_evaluation.period == 0 or step == train_steps):
          self._check_finite()
          metrics["eval"] = dev_evaluation(self.state.params, step)
        if watch.should_stop(step) and step < train_steps:
          if self.last_checkpoint != step:
            self.save(step, batch.position)
          raise preemption.Preempted(step, self.model_dir)
    finally:
      ahead.close()
      writer.close()
    final = setup.prompt_set(self.state.params, step)
    if jax.process_index() == 0:
      final.save(self.model_dir.final_prompts)
    return metrics, final

  def close(self) -> None:
    self.checkpoints.close()
