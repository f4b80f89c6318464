"""Run checkpoints: the trainable state and data position round-trip, another run's
checkpoint is refused, and no backbone array is ever saved."""

import numpy as np
import pytest

from mpt_jax.runtime import checkpoints
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
