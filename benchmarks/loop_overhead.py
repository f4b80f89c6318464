"""The train loop's overhead: seconds per step of the real `TrainLoop` (batches prepared
ahead in its thread, metrics and the NaN check on the log cadence) over seconds per
step of the loop's bare jitted step called back to back on batches already on the device, on
the T5-small shape of prompt_step.py. Prints one JSON line; the target is <= 1.03.

The loop reads ready-made synthetic host batches (an iterator with a data position,
as `MixedBatches` has), so what is measured is the loop, not tf.data. Both are timed
in alternation within one run of the loop, in windows of a few steps: a busy spell of
this shared machine then slows a loop window and the bare steps beside it alike.
"""

import json
import pathlib
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks import common  # pylint: disable=g-import-not-at-top
import mpt_jax  # pylint: disable=g-import-not-at-top
from mpt_jax.prompts import modules as prompts  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime import inputs  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime import loop  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime import optimizers  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime import steps  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime import setup as setup_lib  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime.configs import CheckpointConfig  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime.configs import ModelConfig  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime.model_dir import ModelDir  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime.partitioning import Partitioner  # pylint: disable=g-import-not-at-top

# A T5-small step takes seconds on a CPU and the script should take about three
# minutes: WINDOWS windows of WINDOW steps each. The loop logs (fetching the metrics and
# the NaN flag) once in every window; train()'s default is once in 10 steps.
WINDOW, WINDOWS = 2, 5
LOG_PERIOD = WINDOW


class SyntheticBatches:
  """A few ready-made host batches of a bank of one run, cycled, and the data position
  the loop saves."""

  def __init__(self, count: int = 4):
    self.batches = [{k: v[None] for k, v in common.batch(seed=seed).items()}
                    for seed in range(count)]
    self.position = inputs.BankPosition([inputs.DataPosition(0, {})])

  def __next__(self) -> dict:
    batch = self.batches[self.position[0].step % len(self.batches)]
    self.position[0].step += 1
    return batch


class AlternatingLoop(loop.TrainLoop):
  """A TrainLoop whose step, at the end of each window of WINDOW steps, waits for the
  device, notes the window's time and runs `bare_steps(WINDOW)` before the next.

  Its first step (compilation, and the loop waits for it) and untimed bare steps precede
  the first window; the step after the last window is not timed.
  """

  def __init__(self, *args, bare_steps, **kwargs):
    super().__init__(*args, **kwargs)
    self.loop_step, self.bare_steps = self.step_fn, bare_steps
    self.step_fn = self._alternating_step
    self.calls, self.last, self.window_start = 0, None, None
    self.seconds = {"loop": [], "bare": []}  # per step, window by window

  def _alternating_step(self, *step_args):
    if self.calls % WINDOW == 1:
      jax.block_until_ready(self.last)
      now = time.perf_counter()
      bare = self.bare_steps(WINDOW) / WINDOW  # the first, after the loop compiled, is slow
      if self.window_start is not None:
        self.seconds["loop"].append((now - self.window_start) / WINDOW)
        self.seconds["bare"].append(bare)
      self.window_start = time.perf_counter()
    self.calls += 1
    outputs = self.loop_step(*step_args)
    self.last = outputs[1]  # the metrics; the state is donated to the next step
    return outputs


def _bare_steps(setup, optimizer):
  """run_steps(n) -> seconds: n back-to-back calls of the loop's jitted step (compiled
  again here) on a state and batches of its own, already on the device."""
  shardings = steps.train_state_shardings(
      setup.partitioner, steps.abstract_train_state(setup.initial_prompt, optimizer, 0),
      setup.prompt_shardings)
  step = steps.jit_bank_step(setup.model, [optimizer], setup.partitioner, [shardings],
                             setup.frozen_shardings)
  state = [(setup.partitioner.place(
      steps.initial_train_state(setup.initial_prompt, optimizer, seed=0), shardings),)]
  guard = [setup.partitioner.place(steps.FirstNonFinite(np.zeros(1, np.int32),
                                                        np.zeros(1, np.float32)),
                                   steps.FirstNonFinite.replicated(setup.partitioner))]
  batches = [setup.partitioner.global_bank_batch(b) for b in SyntheticBatches().batches]

  def run_steps(n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
      state[0], metrics, guard[0] = step(state[0], setup.frozen, batches[i % len(batches)],
                                         guard[0])
    jax.block_until_ready(metrics)
    return time.perf_counter() - start
  run_steps(1)
  return run_steps


def main():
  config = common.small_config()
  setup = setup_lib.build_setup(mpt_jax.random_backbone(config), ["synthetic"],
                                prompts.SinglePrompt(common.PROMPT_LENGTH, config.d_model),
                                ModelConfig(), Partitioner())
  optimizer = optimizers.make_optimizer()
  with tempfile.TemporaryDirectory() as directory:
    alternating = AlternatingLoop([loop.LoopRun(setup, optimizer, ModelDir(directory), 0)],
                                  CheckpointConfig(period=None),
                                  bare_steps=_bare_steps(setup, optimizer))
    alternating.start()
    alternating.run(SyntheticBatches(), 2 + WINDOW * WINDOWS, LOG_PERIOD)
    alternating.close()
  seconds = alternating.seconds
  # The fastest window of each: on a shared machine other work only ever adds time.
  loop_step, bare_step = min(seconds["loop"]), min(seconds["bare"])
  print(json.dumps({
      "loop_seconds_per_step": loop_step, "bare_seconds_per_step": bare_step,
      "overhead": loop_step / bare_step,
      # and the median of each loop window over the bare steps right after it
      "median_window_overhead": float(np.median(
          [l / b for l, b in zip(seconds["loop"], seconds["bare"])])),
      "windows": seconds, "steps_per_window": WINDOW, "log_period": LOG_PERIOD,
      "batches": "synthetic host batches, cycled", "versions": {"jax": jax.__version__}}))


if __name__ == "__main__":
  main()
