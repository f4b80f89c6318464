"""Run checkpoints with orbax: the trainable state and the data position, never the
backbone, which is referenced by path and fingerprint instead.

`MODEL_DIR/checkpoints/checkpoint_N/` holds four items: `state` (prompt parameters,
optimizer state, step, RNG), `data` (the input position, JSON), `run` (backbone
path and fingerprint, task list, JSON) and `integrity` (the SHA-256 of the other three
as saved, and the state's tree of shapes and dtypes). Orbax lists a step once it is
written and marks it with `commit_success.txt`. A restore reads the newest step and
verifies it; one that is uncommitted, unreadable or fails its checksums is moved to
`MODEL_DIR/checkpoints_corrupt/` (never deleted) and the next older one is tried, so a
damaged disk or an interrupted copy costs one checkpoint period, not the run.
"""

import hashlib
import json
import logging
import time
from typing import Any, Optional, Sequence

import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from mpt_jax import arrays
from mpt_jax import paths

STATE, DATA, RUN, INTEGRITY = "state", "data", "run", "integrity"
COMMIT_MARKER = "commit_success.txt"  # orbax writes it last, on every filesystem


class RunMismatchError(ValueError):
  """Resuming would mix two different runs (another backbone, task list or state)."""


class CorruptCheckpointError(RuntimeError):
  """A checkpoint cannot be trusted: not committed, unreadable, or its checksums fail."""


def _json_digest(value: dict) -> str:
  return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def state_layout(state: Any) -> list[list]:
  """[[path, shape, dtype], ...] of a state tree (arrays or ShapeDtypeStructs)."""
  return [[jax.tree_util.keystr(path), list(np.shape(leaf)), str(np.dtype(leaf.dtype))]
          for path, leaf in jax.tree_util.tree_leaves_with_path(state)]


def integrity_record(state: Any, data_position: dict, run: dict) -> dict:
  return {"state_sha256": arrays.sha256(arrays.by_path(state)),
          "data_sha256": _json_digest(data_position),
          "run_sha256": _json_digest(run), "state_layout": state_layout(state)}


class RunCheckpoints:
  """Saves a run's checkpoints (keeping `keep` of them) and restores the newest good one."""

  def __init__(self, directory, keep: Optional[int] = 3):
    self.directory = paths.as_path(directory)
    self.quarantine = self.directory.parent / f"{self.directory.name}_corrupt"
    self.manager = ocp.CheckpointManager(
        self.directory, item_names=(STATE, DATA, RUN, INTEGRITY),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=False,
                                             step_prefix="checkpoint"))

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, data_position: dict, run: dict) -> None:
    """Saves host arrays `state` with the checksums they are verified against on restore."""
    self.directory.mkdir(parents=True, exist_ok=True)
    self.manager.save(step, args=ocp.args.Composite(**{
        STATE: ocp.args.StandardSave(state), DATA: ocp.args.JsonSave(data_position),
        RUN: ocp.args.JsonSave(run),
        INTEGRITY: ocp.args.JsonSave(integrity_record(state, data_position, run))}))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def restore_latest(self, abstract_state: Any,
                     run: dict) -> Optional[tuple[int, Any, dict]]:
    """(step, state, data position) of the newest checkpoint that verifies, after
    moving aside every newer one that does not; None when there is none.

    A checkpoint of another run (backbone, tasks, state layout) is refused with
    RunMismatchError and nothing is moved: that is a mistake in the command, not damage.
    """
    restored = restore_together([(self, abstract_state, run)])
    return None if restored is None else (restored[0], *restored[1][0])

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def delete(self, step: int) -> None:
    self.manager.delete(step)

  def restore(self, step: int, abstract_state: Any, run: dict) -> tuple[Any, dict]:
    """(state, data position) of `step`, verified and checked to belong to this run."""
    step_dir = self.directory / f"checkpoint_{step}"
    if not (step_dir / COMMIT_MARKER).exists():
      raise self._corrupt(step, f"it has no {COMMIT_MARKER} (orbax writes it last)")
    recorded = self._read_records(step)
    integrity = recorded[INTEGRITY]
    if _json_digest(recorded[RUN]) != integrity["run_sha256"]:
      raise self._corrupt(step, "its run record fails its checksum")
    check_same_run(recorded[RUN], run, self.directory)
    if integrity["state_layout"] != state_layout(abstract_state):
      raise self._mismatch(step, _layout_difference(integrity["state_layout"],
                                                    state_layout(abstract_state)))
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**{
          STATE: ocp.args.StandardRestore(abstract_state), DATA: ocp.args.JsonRestore()}))
    except Exception as e:  # pylint: disable=broad-except  (the layout matched: damage)
      raise self._corrupt(step, f"reading it failed: {type(e).__name__}: {e}") from e
    state, data = jax.device_get(restored[STATE]), restored[DATA]
    if arrays.sha256(arrays.by_path(state)) != integrity["state_sha256"]:
      raise self._corrupt(step, "its arrays read back differ from what was saved (SHA-256 "
                          "mismatch)")
    if _json_digest(data) != integrity["data_sha256"]:
      raise self._corrupt(step, "its data position differs from what was saved (SHA-256 "
                          "mismatch)")
    return state, data

  def _read_records(self, step: int) -> dict:
    """The run and integrity records of `step`, which every complete checkpoint has."""
    try:
      return self.manager.restore(step, args=ocp.args.Composite(
          **{item: ocp.args.JsonRestore() for item in (RUN, INTEGRITY)}))
    except Exception as e:  # pylint: disable=broad-except
      raise self._corrupt(step, f"reading its run and integrity records failed: "
                          f"{type(e).__name__}: {e}") from e

  def _corrupt(self, step: int, reason: str) -> CorruptCheckpointError:
    return CorruptCheckpointError(f"Checkpoint {step} in {self.directory} cannot be used: "
                                  f"{reason}.")

  def _mismatch(self, step: int, detail: str) -> RunMismatchError:
    return RunMismatchError(
        f"The optimizer state or prompt saved in {self.directory} (step {step}) differs "
        f"from what this run builds ({detail}). Were the optimizer or the prompt settings "
        "changed? Use a new MODEL_DIR or the original settings.")

  def move_aside(self, step: int, reason: str):
    """Moves `checkpoint_<step>` into the quarantine folder with a note of why."""
    name = f"checkpoint_{step}.{time.strftime('%Y%m%d-%H%M%S')}"
    target = self.quarantine / name
    if jax.process_index() == 0:
      self.quarantine.mkdir(parents=True, exist_ok=True)
      (self.directory / f"checkpoint_{step}").rename(target)
      (self.quarantine / f"{name}.reason.txt").write_text(reason + "\n")
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"mpt_jax moved checkpoint {step} aside")
    self.manager.reload()
    return target

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def restore_together(runs: Sequence[tuple[RunCheckpoints, Any, dict]]
                     ) -> Optional[tuple[int, list[tuple[Any, dict]]]]:
  """(step, [(state, data position)] per run) at the newest step every run of a bank
  has a good checkpoint of; None when they have none in common. Each run is given as
  (its checkpoints, its abstract state, its run facts).

  A bank saves its runs one after another, so a bank stopped while saving leaves some
  runs one checkpoint ahead: those are deleted (the bank computes them again, bitwise
  the same). A damaged checkpoint is moved aside, as `restore_latest` does. Runs further
  apart were not trained together, and are refused.
  """
  _check_saved_together(runs)
  while True:
    saved = [set(checkpoints.all_steps()) for checkpoints, _, _ in runs]
    common = set.intersection(*saved)
    step = max(common) if common else None
    restored = [] if step is None else _restore_each(runs, step)
    if restored is None:  # one was damaged and moved aside: look again
      continue
    for (checkpoints, _, _), steps in zip(runs, saved):
      for newer in sorted(s for s in steps if step is None or s > step):
        logging.info("Checkpoint %d in %s is newer than its bank's last common step (the "
                     "bank stopped while saving); deleting it, the bank recomputes it.",
                     newer, checkpoints.directory)
        checkpoints.delete(newer)
    return None if step is None else (step, restored)


def _check_saved_together(runs) -> None:
  """Refuses runs more than one save apart: a bank stopped while saving leaves them one
  apart at most; more means they were not trained together."""
  saved = [set(checkpoints.all_steps()) for checkpoints, _, _ in runs]
  common = set.intersection(*saved)
  step = max(common) if common else None
  for (checkpoints, _, _), steps in zip(runs, saved):
    ahead = sorted(s for s in steps if step is None or s > step)
    if len(ahead) > 1:
      raise RunMismatchError(
          f"The runs of this bank are more than one checkpoint apart ({checkpoints.directory} "
          f"has steps {ahead} after {step or 'none in common'}): they were not trained "
          "together. Give each run of the bank a new MODEL_DIR, or run it alone.")


def _restore_each(runs, step: int) -> Optional[list[tuple[Any, dict]]]:
  """Each run's (state, data position) at `step`; None after moving aside the first
  damaged checkpoint."""
  restored = []
  for checkpoints, abstract, run in runs:
    try:
      restored.append(checkpoints.restore(step, abstract, run))
    except CorruptCheckpointError as e:
      moved = checkpoints.move_aside(step, str(e))
      logging.warning("%s Moved it to %s; trying the checkpoint before it.", e, moved)
      return None
  return restored


def _layout_difference(saved: list, built: list) -> str:
  saved_by_path = {path: f"{dtype}{shape}" for path, shape, dtype in saved}
  built_by_path = {path: f"{dtype}{shape}" for path, shape, dtype in built}
  differences = [f"{path}: saved {saved_by_path.get(path, 'nothing')}, built "
                 f"{built_by_path.get(path, 'nothing')}"
                 for path in sorted(set(saved_by_path) | set(built_by_path))
                 if saved_by_path.get(path) != built_by_path.get(path)]
  return "; ".join(differences[:5]) + (" ..." if len(differences) > 5 else "")


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
