"""Starting a pipeline's stages: each stage is its own process (`python -m
mpt_jax.train`, `mpt_jax.eval`, ...) given the stage's gin files, the pipeline's
shared gin files and bindings, and the pipeline's data and multi-host flags. A stage
whose output exists is skipped; an interrupted one resumes, because rerunning a
training command resumes it.

A stage never outlives the pipeline: it gets SIGTERM when the pipeline process dies,
however it dies (`cli.PARENT_PID_ENV`), and a SIGTERM to the pipeline is passed on.
Either way a training stage saves a checkpoint and exits with the preempted status,
which the pipeline reports with the same status, so a rerun never races an orphan.
"""

import logging
import os
import signal
import subprocess
import sys
from typing import Optional, Sequence

from etils import epath

from mpt_jax import cli
from mpt_jax.runtime import preemption


def binding(name: str, value) -> str:
  """A gin binding of a Python value: `binding('SEED', 3)` -> 'SEED=3'."""
  return f"{name}={value!r}"


class StageFailedError(RuntimeError):
  """A stage process failed or ended without its output."""


class StagePreemptedError(RuntimeError):
  """A stage stopped on SIGTERM after saving a checkpoint; rerunning resumes it."""


class StageLauncher:
  """Runs stage processes with the pipeline's gin files, bindings, flags and cache."""

  def __init__(self, gin_files: Sequence[str], bindings: Sequence[str],
               stage_flags: Sequence[str], compilation_cache: epath.Path):
    self.gin_files = list(gin_files)
    self.bindings = list(bindings)
    self.stage_flags = list(stage_flags)
    # Identical programs (same shapes, same prompt kind) compile once for all stages.
    self.env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(compilation_cache),
                cli.PARENT_PID_ENV: str(os.getpid())}
    self._stage: Optional[subprocess.Popen] = None
    self._terminated = False  # the pipeline itself got SIGTERM

  def command(self, module: str, gin_files: Sequence[str], bindings: Sequence[str],
              shared: bool = True) -> list[str]:
    """The stage's command line; `shared` adds the pipeline's own gin files and bindings."""
    files = [*gin_files, *(self.gin_files if shared else [])]
    all_bindings = [*bindings, *(self.bindings if shared else [])]
    return [sys.executable, "-m", module, *(f"--gin_file={f}" for f in files),
            *(f"--gin_bindings={b}" for b in all_bindings), *self.stage_flags]

  def run(self, name: str, command: Sequence[str], done: Sequence[epath.Path]) -> bool:
    """Runs `command` unless every file of `done` exists; returns whether it ran."""
    if all(path.exists() for path in done):
      logging.info("[%s] already complete (%s); skipping", name, done[0].parent)
      return False
    logging.info("[%s] starting: %s", name, " ".join(command[2:]))
    previous = signal.signal(signal.SIGTERM, self._pass_on_sigterm)
    try:
      self._stage = subprocess.Popen(list(command), env=self.env)
      returncode = self._stage.wait()
    finally:
      self._stage = None
      signal.signal(signal.SIGTERM, previous)
    where = done[0].parent if len(done) == 1 else f"{len(done)} run directories"
    if returncode == preemption.PREEMPTED_EXIT_CODE or self._terminated:
      raise StagePreemptedError(
          f"Stage {name} was stopped by SIGTERM (a training stage saves a checkpoint "
          f"first; its output is in {where}). Rerun the same command to resume: "
          "finished stages are skipped, this one resumes.")
    missing = [str(path) for path in done if not path.exists()]
    if returncode != 0 or missing:
      outputs = (f"; {len(missing)} of its outputs are missing, e.g. {missing[0]}"
                 if missing and len(done) > 1 else "")
      raise StageFailedError(
          f"Stage {name} failed (exit code {returncode}{outputs}); its output is in "
          f"{where}. Fix the cause and rerun the same command: finished stages are "
          "skipped, this one resumes.")
    return True

  def _pass_on_sigterm(self, signum, frame) -> None:
    del frame
    self._terminated = True
    if self._stage is not None:
      self._stage.send_signal(signum)
