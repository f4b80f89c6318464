"""Preemption: SIGTERM (what a preempted Cloud TPU VM, a SLURM time limit or a killed
pipeline sends) becomes a checkpoint at the next step and a distinct exit status.

With one process a SIGTERM handler sets a flag the loop reads between steps. With
several, jax.distributed's preemption service takes the signal on any host and picks
the step every host saves at (`multihost_utils.reached_preemption_sync_point`), so the
hosts' checkpoints agree.
"""

import signal
import threading
import jax
from jax._src import distributed as jax_distributed  # pylint: disable=g-bad-import-order
from jax.experimental import multihost_utils

# sysexits.h's EX_TEMPFAIL: "try again later". A rerun of the same command resumes.
PREEMPTED_EXIT_CODE = 75


class Preempted(Exception):
  """The run was asked to stop and saved a checkpoint at `step`; rerun to resume."""

  def __init__(self, step: int, model_dir):
    super().__init__(f"Preempted at step {step}: a checkpoint of step {step} is in "
                     f"{model_dir}. Rerun the same command to resume from it.")
    self.step = step


class PreemptionWatch:
  """Whether the run should save and stop after the step it has just finished."""

  def __init__(self):
    self._service = (jax.process_count() > 1 and
                     jax_distributed.global_state.preemption_sync_manager is not None)
    self._requested = False
    self._previous = None
    # (signal handlers can only be set from the main thread: train() called elsewhere
    # keeps the default, which ends the process)
    if not self._service and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame) -> None:
    del signum, frame
    self._requested = True

  def should_stop(self, step: int) -> bool:
    """Called after every step, with the same steps on every host."""
    if self._service:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._requested

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

