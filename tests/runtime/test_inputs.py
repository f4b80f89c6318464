"""Training batches: mixing rates, MPT's stochastic task sampling, determinism per
(seed, step), the same rows as a plain row-by-row assembly, one process's shards, and
resuming from a data position while batches are built ahead."""

import collections

import numpy as np
import pytest
import seqio

from mpt_jax.runtime import inputs
import tasks.synthetic as synthetic
from tests import helpers
from tests import toy_tasks


def test_stochastic_task_sampling_draws_k_tasks_and_only_their_examples():
  names = list(synthetic.SOURCE_TASKS)
  batches = inputs.MixedBatches(names, np.ones(len(names)), {"inputs": 101, "targets": 16},
                                batch_size=16, seed=3, stochastic_task_sampling=True)
  counts = set()
  for step in range(12):
    chosen = batches.tasks_for_step(step)
    assert 2 <= len(chosen) <= len(names) and len(set(chosen)) == len(chosen)
    counts.add(len(chosen))
    batch = next(batches)
    assert set(batch["task_ids"].tolist()) <= set(chosen.tolist())
  assert len(counts) >= 3  # K really varies over [2, κ]
  every = inputs.MixedBatches(names, np.ones(len(names)), {"inputs": 8, "targets": 4}, 16)
  assert len(every.tasks_for_step(0)) == len(names)
  with pytest.raises(ValueError, match="draws K from \\[2, κ\\]"):
    inputs.MixedBatches(names[:1], np.ones(1), {"inputs": 8, "targets": 4}, 16,
                        stochastic_task_sampling=True)


def _toy_batches(batch_size=16, **kwargs) -> inputs.MixedBatches:
  return inputs.MixedBatches(list(toy_tasks.TASKS), np.array([1.0, 2.0, 3.0]),
                             helpers.TOY_LENGTHS, batch_size, seed=7, **kwargs)


STEPS, SHARDS = 14, 2


@pytest.fixture(scope="module")
def toy_streams() -> dict:
  """The first rows of every (shard, task) stream of `_toy_batches`, read one by one
  (enough for STEPS batches even if every row came from one stream)."""
  batches = _toy_batches(num_input_shards=SHARDS)
  return {(shard, task_id): list(inputs.task_dataset(
      name, task_id, "train", batches.feature_lengths, shuffle=True,
      seed=batches.seed + 1000003 * task_id, shard_info=seqio.ShardInfo(shard, SHARDS),
      num_epochs=None).take(STEPS * batches.rows_per_shard).as_numpy_iterator())
          for shard in range(SHARDS) for task_id, name in enumerate(batches.task_names)}


def _reference(batches: inputs.MixedBatches, streams: dict) -> list[dict]:
  """Batches assembled the plain way: row by row, each row's task from `rows_for_shard`
  and its example the next one of that (shard, task) stream."""
  taken, out = collections.Counter(), []
  for step in range(STEPS):
    rows = []
    for shard in batches.local_shards:
      for task_id in batches.rows_for_shard(step, shard).tolist():
        rows.append(streams[shard, task_id][taken[shard, task_id]])
        taken[shard, task_id] += 1
    out.append({k: np.stack([row[k] for row in rows]) for k in inputs.MODEL_FEATURES})
  return out


def _assert_same(got: dict, want: dict):
  assert set(got) == set(inputs.MODEL_FEATURES)
  for k in inputs.MODEL_FEATURES:
    assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.parametrize("stochastic", [False, True])
def test_batches_are_each_streams_rows_in_the_order_the_choices_take_them(stochastic,
                                                                          toy_streams):
  # 32 examples per task shard: the busier tasks' streams run into their second epoch.
  batches = _toy_batches(stochastic_task_sampling=stochastic, num_input_shards=SHARDS)
  for step, want in enumerate(_reference(batches, toy_streams)):
    _assert_same(next(batches), want)
    assert batches.position.step == step + 1


def test_a_one_shard_process_builds_its_part_and_resumes_after_the_batches_returned(
    toy_streams):
  # With the test above: one process with 2 shards == two processes with one each.
  batches = _toy_batches(stochastic_task_sampling=True, num_input_shards=SHARDS,
                         local_shards=[1])
  want = _reference(batches, toy_streams)
  for step in range(5):
    _assert_same(next(batches), want[step])  # meanwhile later batches are built ahead
  taken = collections.Counter()
  for step in range(5):
    taken.update(f"1/{t}" for t in batches.rows_for_shard(step, 1).tolist())
  assert batches.position == inputs.DataPosition(5, dict(taken))
  resumed = _toy_batches(stochastic_task_sampling=True, num_input_shards=SHARDS,
                         local_shards=[1], position=inputs.DataPosition.from_json(
                             batches.position.to_json()))
  for step in range(5, 10):
    _assert_same(next(resumed), want[step])
