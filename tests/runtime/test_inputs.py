"""Training batches: mixing rates, MPT's stochastic task sampling, determinism per
(seed, step), and resuming from a data position."""

import numpy as np
import pytest

from mpt_jax.runtime import inputs
import tasks.synthetic as synthetic


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