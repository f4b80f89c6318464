"""Run checkpoints with orbax: the trainable state and the data position, never the
backbone, which is referenced by path and fingerprint instead.

`MODEL_DIR/checkpoints/checkpoint_N/` holds three items: `state` (prompt parameters,
optimizer state, step, RNG), `data` (the input position, JSON) and `run` (backbone
path and fingerprint, task list, JSON). Orbax only lists a step once all of it is
committed, so a killed run resumes from the latest complete checkpoint.
"""

from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from mpt_jax import paths

STATE, DATA, RUN = "state", "data", "run"


class RunMismatchError(ValueError):
  """Resuming would mix two different runs (another backbone or task list)."""


class RunCheckpoints:
  """Saves and restores a run's latest checkpoints (keeping `keep` of them)."""

  def __init__(self, directory, keep: Optional[int] = 3):
    self.directory = paths.as_path(directory)
    self.manager = ocp.CheckpointManager(
        self.directory, item_names=(STATE, DATA, RUN),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             step_prefix="checkpoint"))

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, data_position: dict, run: dict) -> None:
    self.manager.save(step, args=ocp.args.Composite(**{
        STATE: ocp.args.StandardSave(state), DATA: ocp.args.JsonSave(data_position),
        RUN: ocp.args.JsonSave(run)}))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def restore(self, step: int, abstract_state: Any, run: dict) -> tuple[Any, dict]:
    """(state, data position) of `step`, after checking it belongs to this run."""
    saved_run = self.manager.restore(step, args=ocp.args.Composite(
        **{RUN: ocp.args.JsonRestore()}))[RUN]
    check_same_run(saved_run, run, self.directory)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**{
          STATE: ocp.args.StandardRestore(abstract_state), DATA: ocp.args.JsonRestore()}))
    except ValueError as e:
      raise self._mismatch(step, str(e)) from e
    differences = [
        f"{jax.tree_util.keystr(path)}: saved {np.shape(saved)}, built {np.shape(built)}"
        for (path, saved), built in zip(
            jax.tree_util.tree_leaves_with_path(restored[STATE]),
            jax.tree.leaves(abstract_state)) if np.shape(saved) != np.shape(built)]
    if differences:
      raise self._mismatch(step, "; ".join(differences))
    return restored[STATE], restored[DATA]

  def _mismatch(self, step: int, detail: str) -> "RunMismatchError":
    return RunMismatchError(
        f"The optimizer state or prompt saved in {self.directory} (step {step}) differs "
        "from what this run builds: were the optimizer or the prompt settings changed? "
        f"Use a new MODEL_DIR or the original settings. ({detail})")

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def check_same_run(saved: dict, current: dict, directory) -> None:
  if saved.get("backbone_fingerprint") != current.get("backbone_fingerprint"):
    raise RunMismatchError(
        f"{directory} was trained on backbone {saved.get('backbone')!r} (fingerprint "
        f"{saved.get('backbone_fingerprint')}), but this run uses {current.get('backbone')!r} "
        f"(fingerprint {current.get('backbone_fingerprint')}). Use a new MODEL_DIR or the "
        "original backbone.")
  if saved.get("tasks") != current.get("tasks"):
    raise RunMismatchError(
        f"{directory} was trained on tasks {saved.get('tasks')}, but this run has "
        f"{current.get('tasks')}; task ids would not match. Use a new MODEL_DIR.")
