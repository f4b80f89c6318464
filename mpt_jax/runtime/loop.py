"""The train loop: it feeds a bank of runs (one run, or many that share the backbone
and the prompt's structure) to one jitted step (`steps`), and logs, checkpoints and
evaluates each run in its own MODEL_DIR, as a run trained alone writes it.

The host never waits for the device between log steps: batches are read, checked and
transferred ahead in a thread, the metrics stay on the device until a log step, and
each run's first non-finite loss is recorded on the device and checked on the log
cadence and before every checkpoint or evaluation. A lone run stops there; a bank
marks that run failed (MODEL_DIR/failed.json) and goes on with the others.
"""

import contextlib
import dataclasses
import json
import logging
import queue
import threading
import time
from typing import Optional, Sequence

from flax import serialization
import jax
import numpy as np
import optax

from mpt_jax import arrays
from mpt_jax.prompts import modules as prompt_modules
from mpt_jax.prompts.prompt_set import PromptSet
from mpt_jax.runtime import checkpoints as checkpoints_lib
from mpt_jax.runtime import inputs
from mpt_jax.runtime import metric_writers
from mpt_jax.runtime import preemption
from mpt_jax.runtime import steps as steps_lib
from mpt_jax.runtime.configs import CheckpointConfig
from mpt_jax.runtime.model_dir import ModelDir
from mpt_jax.runtime.setup import RunSetup


class NonFiniteLossError(FloatingPointError):
  """The loss or the prompt became NaN or inf; the message names the step and the last
  checkpoint, which is always finite."""


@dataclasses.dataclass
class LoopRun:
  """One run of the loop's bank: what it trains, how, where it writes, its seed."""
  setup: RunSetup
  optimizer: optax.GradientTransformation
  model_dir: ModelDir
  seed: int


@dataclasses.dataclass
class PreparedBatch:
  """A bank's batch on the devices, with what the host keeps of it: each run's data
  position just after it (a checkpoint at its step resumes from there) and its size
  for progress."""
  arrays: dict
  positions: list[dict]
  tokens: int  # all runs' and hosts' non-padding input and target tokens
  examples: int  # this host's, of all runs


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
  """Owns the train states of a bank of runs: starts or resumes them together, steps
  them, saves each in its own MODEL_DIR."""

  def __init__(self, runs: Sequence[LoopRun], checkpointing: CheckpointConfig):
    self.runs = list(runs)
    lead = self.runs[0].setup  # the model, mesh and frozen arrays every run shares
    self.partitioner, self.frozen = lead.partitioner, lead.frozen
    self.checkpoint_period = checkpointing.period
    self.abstract_states = [steps_lib.abstract_train_state(r.setup.initial_prompt,
                                                           r.optimizer, r.seed)
                            for r in self.runs]
    self.shardings = [steps_lib.train_state_shardings(self.partitioner, abstract,
                                                      r.setup.prompt_shardings)
                      for r, abstract in zip(self.runs, self.abstract_states)]
    self.step_fn = steps_lib.jit_bank_step(lead.model, [r.optimizer for r in self.runs],
                                           self.partitioner, self.shardings,
                                           lead.frozen_shardings)
    self.checkpoints = [checkpoints_lib.RunCheckpoints(r.model_dir.checkpoints,
                                                       keep=checkpointing.keep)
                        for r in self.runs]
    self.last_checkpoint = None
    self.states = None
    self.failed: dict[int, str] = {}  # run index -> what happened
    self.first_non_finite = None

  @property
  def is_bank(self) -> bool:
    return len(self.runs) > 1

  @property
  def active(self) -> list[int]:
    return [i for i in range(len(self.runs)) if i not in self.failed]

  def start(self) -> list[Optional[inputs.DataPosition]]:
    """Restores the runs' newest common checkpoint (returning each run's data position)
    or starts afresh. A bank's run marked failed stays so (its slot trains on, frozen).
    Call it holding the runs' locks: a damaged checkpoint is moved aside."""
    first_step, first_loss = np.zeros(len(self.runs), np.int32), np.zeros(len(self.runs),
                                                                          np.float32)
    for i, run in enumerate(self.runs):
      if run.model_dir.failed_json.exists():
        failure = json.loads(run.model_dir.failed_json.read_text())
        self.failed[i] = failure["reason"]
        first_step[i], first_loss[i] = failure["step"], failure["loss"]
    self.first_non_finite = self.partitioner.place(
        steps_lib.FirstNonFinite(first_step, first_loss),
        steps_lib.FirstNonFinite.replicated(self.partitioner))
    states = [steps_lib.initial_train_state(r.setup.initial_prompt, r.optimizer, r.seed)
              for r in self.runs]
    positions = [None] * len(self.runs)
    restored = checkpoints_lib.restore_together([
        (self.checkpoints[i], serialization.to_state_dict(self.abstract_states[i]),
         self.runs[i].setup.run_facts) for i in self.active])
    if restored is not None:
      self.last_checkpoint, saved = restored
      for i, (state, data) in zip(self.active, saved):
        states[i] = serialization.from_state_dict(self.abstract_states[i], state)
        positions[i] = inputs.DataPosition.from_json(data)
      logging.info("Resuming %s from step %d", self._name(), self.last_checkpoint)
    self.states = [self.partitioner.place(state, shardings)
                   for state, shardings in zip(states, self.shardings)]
    return positions

  def _name(self) -> str:
    if not self.is_bank:
      return str(self.runs[0].model_dir)
    return f"the bank of {len(self.runs)} runs ({self.runs[0].model_dir}, ...)"

  def save(self, step: int, positions: Sequence[dict]) -> None:
    """Saves each healthy run's state at `step`, refusing a run's state after a
    non-finite loss or when it is not finite itself: every checkpoint can be resumed
    from."""
    self._check_finite()
    hosts = jax.device_get(self.states)
    for i in self.active:
      bad = arrays.non_finite(arrays.by_path((hosts[i].params, hosts[i].opt_state)))
      if bad:
        self._fail(i, step, float("nan"),
                   f"The prompt or its optimizer state is not finite at step {step} of "
                   f"{self.runs[i].model_dir} ({', '.join(bad[:3])}), so it was not saved.")
    for i in self.active:
      self.checkpoints[i].save(step, serialization.to_state_dict(hosts[i]), positions[i],
                               self.runs[i].setup.run_facts)
    for i in self.active:
      self.checkpoints[i].wait()
    self.last_checkpoint = step
    if jax.process_index() == 0:
      for i in self.active:
        run = self.runs[i]
        run.setup.prompt_set(hosts[i].params, step).save(run.model_dir.step_prompts(step))

  def _last_good(self) -> str:
    if self.last_checkpoint is None:
      return "No checkpoint was saved yet."
    return (f"The last checkpoint, step {self.last_checkpoint}, is finite; a rerun resumes "
            "from it.")

  def _fail(self, i: int, step: int, loss: float, what: str) -> None:
    """Stops run `i`: a lone run raises; a bank's run is marked failed and the bank goes
    on (raising once no run is left)."""
    advice = "Lower the learning rate or check the data, then rerun."
    if not self.is_bank:
      raise NonFiniteLossError(f"{what} {self._last_good()} {advice}")
    reason = (f"{what} The bank went on without it; its checkpoints up to step "
              f"{self.last_checkpoint or 0} are finite. {advice}")
    self.failed[i] = reason
    logging.error("%s", reason)
    if jax.process_index() == 0:
      self.runs[i].model_dir.failed_json.write_text(json.dumps(
          {"step": step, "loss": loss, "reason": reason}, indent=2))
    if not self.active:
      raise NonFiniteLossError(f"Every run of {self._name()} failed: " +
                               " ".join(self.failed.values()))

  def _check_finite(self) -> None:
    """Stops each run whose loss was not finite at some step since the last check (one
    small fetch from the device)."""
    first = jax.device_get(self.first_non_finite)
    for i in self.active:
      if first.step[i]:
        self._fail(i, int(first.step[i]), float(first.loss[i]),
                   f"The loss is {float(first.loss[i])} at step {int(first.step[i])} of "
                   f"{self.runs[i].model_dir}; nothing after the last checkpoint was saved.")

  def _prepare(self, local: dict, positions: list[dict]) -> PreparedBatch:
    """Runs in BatchesAhead's thread: checks each run's task ids and sends the batch to
    the devices."""
    for run, task_ids in zip(self.runs, local["task_ids"]):
      prompt_modules.check_task_ids(task_ids, len(run.setup.task_names),
                                    run.setup.task_names)
    tokens = int((local["encoder_input_tokens"] > 0).sum() +
                 local["decoder_loss_weights"].sum())
    return PreparedBatch(self.partitioner.global_bank_batch(local), positions,
                         tokens * jax.process_count(), local["task_ids"].size)

  def _log(self, writers, step: int, train_steps: int, metrics: dict,
           progress: Progress) -> dict[int, dict]:
    """Writes each healthy run's metrics (and the bank's rates); returns them by run."""
    rates = progress.rates(step) or {}
    rows = {i: {**{k: float(v[i]) for k, v in metrics.items()}, **rates}
            for i in self.active}
    for i, row in rows.items():
      writers[i].write_scalars(step, row)
    losses = [row["loss"] for row in rows.values()]
    loss = (f"loss {losses[0]:.4f}" if not self.is_bank else
            f"loss {np.mean(losses):.4f} (mean of {len(losses)} runs, {min(losses):.4f} to "
            f"{max(losses):.4f})")
    if not rates:  # only the first step, mostly compilation, has run
      logging.info("step %d/%d  %s  (first step, with compilation: %.1f s)", step,
                   train_steps, loss, progress.first_step_seconds)
    else:
      logging.info("step %d/%d  %s  %.2f steps/s  %.0f tokens/s  %.1f examples/s on this "
                   "host  ETA %s", step, train_steps, loss, rates["steps_per_second"],
                   rates["tokens_per_second"], rates["host_examples_per_second"],
                   _eta((train_steps - step) / max(rates["steps_per_second"], 1e-9)))
    return rows

  def run(self, batches: inputs.BankBatches, train_steps: int, log_period: int,
          dev_evaluation=None) -> list[tuple[dict, Optional[PromptSet]]]:
    """Trains to `train_steps`; returns each run's last metrics (and eval results) and
    final prompt (None for a failed run). Raises `preemption.Preempted` after saving when
    asked to stop, and NonFiniteLossError at the end when a run of the bank failed."""
    watch = preemption.PreemptionWatch()
    try:
      return self._run(batches, train_steps, log_period, dev_evaluation, watch)
    finally:
      watch.close()

  def _evaluate(self, dev_evaluation, step: int, metrics: dict[int, dict]) -> None:
    self._check_finite()
    params = [state.params for state in self.states]
    for i, results in dev_evaluation(params, step, self.active).items():
      metrics.setdefault(i, {})["eval"] = results

  def _run(self, batches, train_steps, log_period, dev_evaluation,
           watch: preemption.PreemptionWatch) -> list[tuple[dict, Optional[PromptSet]]]:
    writers = [metric_writers.create_writer(r.model_dir.path, "train") for r in self.runs]
    step = self.last_checkpoint or 0
    progress = Progress()
    metrics: dict[int, dict] = {}  # each run's last logged metrics and eval results
    if dev_evaluation and step == 0:  # where each method starts, for the curves
      self._evaluate(dev_evaluation, 0, metrics)
    ahead = BatchesAhead(batches, train_steps - step, self._prepare)
    try:
      while step < train_steps:
        started = time.time()
        batch = next(ahead)
        self.states, step_metrics, self.first_non_finite = self.step_fn(
            tuple(self.states), self.frozen, batch.arrays, self.first_non_finite)
        step += 1
        if progress.first_step_seconds is None:  # its compilation and run, timed apart
          jax.block_until_ready(step_metrics)
        progress.step_done(step, batch.tokens, batch.examples, started)
        if step % log_period == 0 or step == train_steps:
          self._check_finite()
          for i, row in self._log(writers, step, train_steps, jax.device_get(step_metrics),
                                  progress).items():
            metrics.setdefault(i, {}).update(row)
        if (self.checkpoint_period and step % self.checkpoint_period == 0 or
            step == train_steps):
          self.save(step, batch.positions)
        if dev_evaluation and (step % dev_evaluation.period == 0 or step == train_steps):
          self._evaluate(dev_evaluation, step, metrics)
        if watch.should_stop(step) and step < train_steps:
          if self.last_checkpoint != step:
            self.save(step, batch.positions)
          raise preemption.Preempted(step, self._name())
    finally:
      ahead.close()
      for writer in writers:
        writer.close()
    return self._finish(step, metrics)

  def _finish(self, step: int, metrics: dict[int, dict]) -> list[tuple[dict, Optional[PromptSet]]]:
    """Saves each healthy run's final prompt; raises naming the failed runs, if any."""
    finished = []
    for i, run in enumerate(self.runs):
      final = None
      if i not in self.failed:
        final = run.setup.prompt_set(self.states[i].params, step)
        if jax.process_index() == 0:
          final.save(run.model_dir.final_prompts)
      finished.append((metrics.get(i, {}), final))
    if self.failed:
      raise NonFiniteLossError(
          f"{len(self.failed)} of the {len(self.runs)} runs failed; the others finished. "
          + " ".join(self.failed.values()))
    return finished

  def close(self) -> None:
    for checkpoints in self.checkpoints:
      checkpoints.close()
