"""Run checkpoints: the trainable state and data position round-trip, another run's
checkpoint is refused, a damaged one is moved aside for the one before it, and no
backbone array is ever saved."""

import logging

import numpy as np
import pytest

from mpt_jax.runtime import checkpoints
from tests import faults
from tests import helpers

RUN = {"backbone": "/b", "backbone_fingerprint": "abc", "tasks": ["x", "y"]}


def _state(value=1.0):
  return {"params": {"prompt": {"prompts": np.full((2, 3), value, np.float32)}},
          "step": np.array(4, np.int32)}


def test_state_and_data_position_round_trip(tmp_path):
  saved = checkpoints.RunCheckpoints(tmp_path, keep=2)
  for step in (1, 2, 3):
    saved.save(step, _state(step), {"step": step, "consumed": {"0/1": 5 * step}}, RUN)
  saved.close()
  restored = checkpoints.RunCheckpoints(tmp_path, keep=2)
  assert restored.latest_step() == 3
  assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_2", "checkpoint_3"]
  state, position = restored.restore(3, _state(0.0), RUN)
  np.testing.assert_array_equal(state["params"]["prompt"]["prompts"], _state(3)["params"]
                                ["prompt"]["prompts"])
  assert position == {"step": 3, "consumed": {"0/1": 15}}


@pytest.mark.parametrize("change,message", [
    ({"backbone_fingerprint": "def"}, "fingerprint abc"),
    ({"tasks": ["y", "x"]}, "task ids would not match")])
def test_another_runs_checkpoint_is_refused(tmp_path, change, message):
  saved = checkpoints.RunCheckpoints(tmp_path)
  saved.save(1, _state(), {"step": 1, "consumed": {}}, RUN)
  saved.close()
  with pytest.raises(checkpoints.RunMismatchError, match=message):
    checkpoints.RunCheckpoints(tmp_path).restore(1, _state(), {**RUN, **change})


def test_a_different_state_structure_is_refused(tmp_path):
  saved = checkpoints.RunCheckpoints(tmp_path)
  saved.save(1, _state(), {"step": 1, "consumed": {}}, RUN)
  saved.close()
  other = {"params": {"prompt": {"prompts": np.zeros((2, 4), np.float32)}},
           "step": np.array(0, np.int32)}
  with pytest.raises(checkpoints.RunMismatchError, match="differs from what this run builds"):
    checkpoints.RunCheckpoints(tmp_path).restore(1, other, RUN)


def test_a_training_runs_checkpoints_are_far_smaller_than_its_backbone(tmp_path,
                                                                       tiny_backbone_dir):
  helpers.train_toy(tmp_path, tiny_backbone_dir, train_steps=10)
  size = sum(f.stat().st_size for f in (tmp_path / "checkpoints").rglob("*") if f.is_file())
  assert size < (tiny_backbone_dir / "model.safetensors").stat().st_size / 2


def _restore_latest(directory, run=None):
  saved = checkpoints.RunCheckpoints(directory)
  try:
    return saved.restore_latest(_state(0.0), run or RUN)
  finally:
    saved.close()


def _three_checkpoints(directory):
  saved = checkpoints.RunCheckpoints(directory, keep=None)
  for step in (1, 2, 3):
    saved.save(step, _state(step), {"step": step, "consumed": {"0/1": 5 * step}}, RUN)
  saved.close()


@pytest.mark.parametrize("how", faults.CORRUPTIONS)
def test_a_damaged_latest_checkpoint_is_moved_aside_for_the_one_before(tmp_path, how, caplog):
  _three_checkpoints(tmp_path / "checkpoints")
  faults.corrupt(tmp_path / "checkpoints" / "checkpoint_3", how)
  with caplog.at_level(logging.WARNING):
    step, state, position = _restore_latest(tmp_path / "checkpoints")
  assert step == 2 and position == {"step": 2, "consumed": {"0/1": 10}}
  np.testing.assert_array_equal(state["params"]["prompt"]["prompts"], np.full((2, 3), 2.0))
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
      "checkpoint_1", "checkpoint_2"]
  moved = [p for p in (tmp_path / "checkpoints_corrupt").iterdir() if p.is_dir()]
  assert len(moved) == 1 and moved[0].name.startswith("checkpoint_3.")
  reason = moved[0].with_name(moved[0].name + ".reason.txt").read_text()
  warning = " ".join(r.getMessage() for r in caplog.records)
  assert "Checkpoint 3" in warning and str(moved[0]) in warning and reason.strip() in warning


def test_the_reason_quotes_the_underlying_failure(tmp_path):
  _three_checkpoints(tmp_path / "checkpoints")
  faults.corrupt(tmp_path / "checkpoints" / "checkpoint_3", "truncate")
  with pytest.raises(checkpoints.CorruptCheckpointError,
                     match=r"Checkpoint 3 .* cannot be used: reading it failed: .*byte range"):
    checkpoints.RunCheckpoints(tmp_path / "checkpoints").restore(3, _state(0.0), RUN)
  faults.corrupt(tmp_path / "checkpoints" / "checkpoint_2", "flip_bytes")
  with pytest.raises(checkpoints.CorruptCheckpointError, match="SHA-256 mismatch|reading"):
    checkpoints.RunCheckpoints(tmp_path / "checkpoints").restore(2, _state(0.0), RUN)


def test_with_every_checkpoint_damaged_the_run_starts_afresh(tmp_path):
  _three_checkpoints(tmp_path / "checkpoints")
  for step, how in zip((1, 2, 3), faults.CORRUPTIONS):
    faults.corrupt(tmp_path / "checkpoints" / f"checkpoint_{step}", how)
  assert _restore_latest(tmp_path / "checkpoints") is None
  assert len([p for p in (tmp_path / "checkpoints_corrupt").iterdir() if p.is_dir()]) == 3


def test_another_runs_checkpoint_is_never_moved_aside(tmp_path):
  _three_checkpoints(tmp_path / "checkpoints")
  before = faults.files_as_bytes(tmp_path)
  with pytest.raises(checkpoints.RunMismatchError):
    _restore_latest(tmp_path / "checkpoints", {**RUN, "tasks": ["z"]})
  assert faults.files_as_bytes(tmp_path) == before


@pytest.fixture(name="bank")
def bank_of_saved_runs(tmp_path):
  """bank(saved_steps): runs a, b, ... with checkpoints of `saved_steps[i]` (state value =
  step), reopened as a resuming bank opens them; closed after the test."""
  opened = []
  def make(saved_steps):
    runs = []
    for name, steps in zip("abc", saved_steps):
      saved = checkpoints.RunCheckpoints(tmp_path / name, keep=None)
      for step in steps:
        saved.save(step, _state(step), {"step": step, "consumed": {}}, RUN)
      saved.close()
      runs.append((checkpoints.RunCheckpoints(tmp_path / name, keep=None), _state(0.0), RUN))
    opened.extend(run for run, _, _ in runs)
    return runs
  yield make
  for run in opened:
    run.close()


def _values(restored):
  return [float(state["params"]["prompt"]["prompts"][0, 0]) for state, _ in restored]


def test_a_bank_resumes_at_its_runs_newest_common_step_and_drops_a_half_saved_one(bank):
  # Stopped while saving step 20: a and c saved it, b did not.
  runs = bank([(10, 20), (10,), (10, 20)])
  step, restored = checkpoints.restore_together(runs)
  assert step == 10 and _values(restored) == [10.0, 10.0, 10.0]
  assert [run.all_steps() for run, _, _ in runs] == [[10], [10], [10]]


def test_a_damaged_common_checkpoint_sends_every_run_back_one(tmp_path, bank):
  runs = bank([(10, 20), (10, 20)])
  faults.corrupt(tmp_path / "b" / "checkpoint_20", "truncate")
  step, restored = checkpoints.restore_together(runs)
  assert step == 10 and _values(restored) == [10.0, 10.0]
  assert [run.all_steps() for run, _, _ in runs] == [[10], [10]]
  assert len(list((tmp_path / "b_corrupt").iterdir())) == 2  # moved aside, with its reason


def test_runs_further_apart_than_one_save_are_refused(bank):
  runs = bank([(10, 20, 30), (10,)])
  with pytest.raises(checkpoints.RunMismatchError,
                     match=r"more than one checkpoint apart .* steps \[20, 30\] after 10"):
    checkpoints.restore_together(runs)
  assert [run.all_steps() for run, _, _ in runs] == [[10, 20, 30], [10]]  # nothing removed


def test_a_bank_stopped_in_its_first_save_starts_afresh(bank):
  runs = bank([(10,), ()])
  assert checkpoints.restore_together(runs) is None
  assert [run.all_steps() for run, _, _ in runs] == [[], []]
