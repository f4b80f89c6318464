"""Training batches: per-task SeqIO pipelines mixed on the host, deterministically.

A run's task list (a task, or a mixture's tasks in order) fixes the task ids. Each
batch is a pure function of (seed, step): which tasks it draws from and which task
fills each row come from RNGs seeded by (seed, step[, shard]), and each task's
examples come from its own shuffled, repeated SeqIO stream. The data position is
how many examples each stream has given, so a resumed run skips exactly those.

The global batch is made of `num_input_shards` equal parts, shard s reading shard s
of every task (seqio.ShardInfo). A process produces the shards assigned to it, so
one process with 2 shards and two processes with one shard each build the very
same global batch.
"""

import dataclasses
import logging
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np
import seqio

from mpt_jax.runtime.features import TaskIdFeatureConverter
from tasks import registry

MODEL_FEATURES = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
                  "decoder_loss_weights", "task_ids")


def task_dataset(task_name: str, task_id: int, split: str,
                 feature_lengths: Mapping[str, int], *, shuffle: bool, seed: Optional[int],
                 shard_info: Optional[seqio.ShardInfo] = None,
                 num_epochs: Optional[int] = 1, skip: int = 0):
  """One task's model features, with `task_ids` = task_id."""
  task = registry.get_task_or_mixture(task_name)
  ds = task.get_dataset(dict(feature_lengths), split=split, shuffle=shuffle, seed=seed,
                        shard_info=shard_info, num_epochs=num_epochs, use_cached=False,
                        trim_output_features=True)
  ds = TaskIdFeatureConverter(task_id)(ds, feature_lengths)
  return ds.skip(skip) if skip else ds


def mixing_rates(task_names: Sequence[str], provider_name: str,
                 examples_cap: Optional[int], split: str) -> np.ndarray:
  """Each task's share of the rows: the mixture's own rates, or examples-proportional
  with `examples_cap` (min(#examples, cap)) when a cap is given."""
  provider = seqio.get_mixture_or_task(provider_name)
  rates = []
  for name in task_names:
    if examples_cap is not None:
      count = seqio.get_mixture_or_task(name).num_input_examples(split)
      if count is None:
        raise ValueError(f"Task {name!r} does not know its {split} size, so "
                         "examples-proportional mixing cannot weigh it; give its data "
                         "source num_input_examples or mix with the mixture's rates.")
      rates.append(min(count, examples_cap))
    elif isinstance(provider, seqio.Mixture):
      rates.append(provider.get_rate(seqio.get_mixture_or_task(name)))
    else:
      rates.append(1.0)
  rates = np.asarray(rates, np.float64)
  if not np.all(rates >= 0) or rates.sum() <= 0:
    raise ValueError(f"Mixing rates {dict(zip(task_names, rates))} must be >= 0 and not all 0.")
  return rates / rates.sum()


@dataclasses.dataclass
class DataPosition:
  """How far each (shard, task) stream has been read, and how many batches made."""
  step: int
  consumed: dict[str, int]  # "shard/task_id" -> examples taken

  def to_json(self) -> dict:
    return {"step": self.step, "consumed": dict(self.consumed)}

  @classmethod
  def from_json(cls, value: Mapping) -> "DataPosition":
    return cls(int(value["step"]), {k: int(v) for k, v in value["consumed"].items()})


class MixedBatches:
  """Deterministic, resumable batches of this process's rows of the global batch.

  With `stochastic_task_sampling` (MPT's stage 2) each batch first draws K uniformly
  from [2, κ] and K of the tasks uniformly without replacement; rows are then drawn
  from those tasks only, in proportion to their mixing rates.
  """

  def __init__(self, task_names: Sequence[str], rates: np.ndarray,
               feature_lengths: Mapping[str, int], batch_size: int, *, split: str = "train",
               seed: int = 0, stochastic_task_sampling: bool = False,
               max_tasks_per_batch: Optional[int] = None, num_input_shards: int = 1,
               local_shards: Optional[Sequence[int]] = None,
               position: Optional[DataPosition] = None, shuffle: bool = True):
    if batch_size % num_input_shards:
      raise ValueError(f"batch_size {batch_size} is not divisible by num_input_shards "
                       f"{num_input_shards}.")
    self.task_names = list(task_names)
    self.rates = np.asarray(rates, np.float64)
    self.feature_lengths = dict(feature_lengths)
    self.batch_size = batch_size
    self.split = split
    self.seed = seed
    self.shuffle = shuffle
    self.num_input_shards = num_input_shards
    self.rows_per_shard = batch_size // num_input_shards
    self.local_shards = list(range(num_input_shards) if local_shards is None else local_shards)
    kappa = len(self.task_names)
    self.max_tasks = max_tasks_per_batch or kappa
    if stochastic_task_sampling and not 2 <= self.max_tasks <= kappa:
      raise ValueError(f"Stochastic task sampling draws K from [2, κ]; κ = "
                       f"{self.max_tasks} with {kappa} tasks is not possible.")
    self.stochastic = stochastic_task_sampling
    self.position = position or DataPosition(0, {})
    self._streams: dict[str, Iterator] = {}

  def _stream(self, shard: int, task_id: int) -> Iterator:
    key = f"{shard}/{task_id}"
    if key not in self._streams:
      ds = task_dataset(
          self.task_names[task_id], task_id, self.split, self.feature_lengths,
          shuffle=self.shuffle, seed=self.seed + 1000003 * task_id,
          shard_info=seqio.ShardInfo(shard, self.num_input_shards),
          num_epochs=None, skip=self.position.consumed.get(key, 0))
      self._streams[key] = ds.as_numpy_iterator()
      logging.info("Opened %s stream %s at example %d", self.task_names[task_id], key,
                   self.position.consumed.get(key, 0))
    return self._streams[key]

  def tasks_for_step(self, step: int) -> np.ndarray:
    """The task ids a batch may draw from (all of them, or MPT's K random ones)."""
    if not self.stochastic:
      return np.arange(len(self.task_names))
    rng = np.random.default_rng([self.seed, step])
    k = int(rng.integers(2, self.max_tasks + 1))
    return np.sort(rng.choice(len(self.task_names), size=k, replace=False))

  def rows_for_shard(self, step: int, shard: int) -> np.ndarray:
    """The task id of each of a shard's rows at a step."""
    tasks = self.tasks_for_step(step)
    weights = self.rates[tasks] / self.rates[tasks].sum()
    rng = np.random.default_rng([self.seed, step, shard])
    return rng.choice(tasks, size=self.rows_per_shard, p=weights)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    step = self.position.step
    rows = []
    for shard in self.local_shards:
      for task_id in self.rows_for_shard(step, shard):
        rows.append(next(self._stream(shard, int(task_id))))
        key = f"{shard}/{int(task_id)}"
        self.position.consumed[key] = self.position.consumed.get(key, 0) + 1
    self.position.step += 1
    return {k: np.stack([row[k] for row in rows]) for k in MODEL_FEATURES}
