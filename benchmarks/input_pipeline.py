"""Training-input throughput: examples/s one process (one host) gets from `MixedBatches`
on the synthetic source suite (six tasks, their mixture's rates), task lengths inputs 512
/ targets 128, one input shard. Prints one JSON line.

Each batch size is measured for the current `MixedBatches` and for `RowByRowBaseline`,
the assembly it replaced, so their ratio comes from one run. Both read the same rows.
The warm-up opens the streams and reads one pass over every task (the synthetic source
generates its first epoch in Python; later epochs come from seqio's in-memory cache),
so the rates are a long run's steady state. The two are timed in alternating rounds
and each keeps its best round: on a shared machine other work only ever adds time.
Each round first reads LEAD_IN examples untimed, so that batches built ahead while the
other one was timed do not count.
"""

import json
import pathlib
import sys
import time

import numpy as np
import seqio

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from mpt_jax.runtime import inputs  # pylint: disable=g-import-not-at-top
import tasks.synthetic as synthetic  # pylint: disable=g-import-not-at-top

FEATURE_LENGTHS = {"inputs": 512, "targets": 128}
BATCH_SIZES = (32, 256)
ROUNDS = 3
EXAMPLES_PER_ROUND = 8192
LEAD_IN = 2048


class RowByRowBaseline:
  """The baseline measured against: MixedBatches.__next__ as it was, one `next()` per
  row from a per-(shard, task) numpy iterator and a Python `np.stack` per feature."""

  def __init__(self, mixed: inputs.MixedBatches):
    self.mixed = mixed
    self.step = 0
    self.streams = {}

  def _stream(self, shard: int, task_id: int):
    if (shard, task_id) not in self.streams:
      mixed = self.mixed
      self.streams[shard, task_id] = inputs.task_dataset(
          mixed.task_names[task_id], task_id, mixed.split, mixed.feature_lengths,
          shuffle=mixed.shuffle, seed=mixed.seed + 1000003 * task_id,
          shard_info=seqio.ShardInfo(shard, mixed.num_input_shards),
          num_epochs=None).as_numpy_iterator()
    return self.streams[shard, task_id]

  def __next__(self):
    rows = []
    for shard in self.mixed.local_shards:
      for task_id in self.mixed.rows_for_shard(self.step, shard):
        rows.append(next(self._stream(shard, int(task_id))))
    self.step += 1
    return {k: np.stack([row[k] for row in rows]) for k in inputs.MODEL_FEATURES}


def _warm_up(batches, batch_size: int) -> None:
  examples = sum(seqio.get_mixture_or_task(name).num_input_examples("train")
                 for name in synthetic.SOURCE_TASKS)
  for _ in range(-(-examples // batch_size) + 1):
    next(batches)


def _examples_per_second(batches, batch_size: int) -> float:
  for _ in range(LEAD_IN // batch_size):
    next(batches)
  steps = EXAMPLES_PER_ROUND // batch_size
  start = time.perf_counter()
  for _ in range(steps):
    next(batches)
  return steps * batch_size / (time.perf_counter() - start)


def main():
  names = list(synthetic.SOURCE_TASKS)
  rates = inputs.mixing_rates(names, synthetic.SOURCE_MIXTURE, None, "train")
  result = {"examples_per_second": {}, "baseline_examples_per_second": {}, "speedup": {}}
  for batch_size in BATCH_SIZES:
    pipelines = {
        "new": inputs.MixedBatches(names, rates, FEATURE_LENGTHS, batch_size),
        "baseline": RowByRowBaseline(inputs.MixedBatches(names, rates, FEATURE_LENGTHS,
                                                         batch_size))}
    for batches in pipelines.values():
      _warm_up(batches, batch_size)
    best = dict.fromkeys(pipelines, 0.0)
    for _ in range(ROUNDS):
      for name, batches in pipelines.items():
        best[name] = max(best[name], _examples_per_second(batches, batch_size))
    result["examples_per_second"][batch_size] = round(best["new"])
    result["baseline_examples_per_second"][batch_size] = round(best["baseline"])
    result["speedup"][batch_size] = round(best["new"] / best["baseline"], 2)
  print(json.dumps({**result, "feature_lengths": FEATURE_LENGTHS,
                    "tasks": len(names), "examples_per_round": EXAMPLES_PER_ROUND}))


if __name__ == "__main__":
  main()
