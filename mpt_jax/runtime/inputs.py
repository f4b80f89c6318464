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

Rows are mixed, batched and converted to model features inside tf.data, which builds
batches ahead in its own threads; a Python loop over rows capped the host at a few
thousand examples/s. The position still counts only the batches `next()` returned.
"""

import collections
import dataclasses
import itertools
import logging
from typing import Iterator, Mapping, Optional, Sequence

import numpy as np
import seqio
import tensorflow as tf

from mpt_jax.runtime.features import TaskIdFeatureConverter
from tasks import registry

MODEL_FEATURES = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
                  "decoder_loss_weights", "task_ids")
# Steps of row choices per call into Python: tf.data's generator hand-off costs about
# as much as computing one step's choices.
_CHOICE_STEPS = 16


def _task_features(task_name: str, split: str, feature_lengths: Mapping[str, int], *,
                   shuffle: bool, seed: Optional[int], shard_info: Optional[seqio.ShardInfo],
                   num_epochs: Optional[int]):
  """One task's stream of trimmed task features, before any feature conversion."""
  task = registry.get_task_or_mixture(task_name)
  return task.get_dataset(dict(feature_lengths), split=split, shuffle=shuffle, seed=seed,
                          shard_info=shard_info, num_epochs=num_epochs, use_cached=False,
                          trim_output_features=True)


def task_dataset(task_name: str, task_id: int, split: str,
                 feature_lengths: Mapping[str, int], *, shuffle: bool, seed: Optional[int],
                 shard_info: Optional[seqio.ShardInfo] = None,
                 num_epochs: Optional[int] = 1, skip: int = 0):
  """One task's model features, with `task_ids` = task_id, row by row: the rows that
  `MixedBatches` takes from the stream in order (it converts them a batch at a time)."""
  ds = _task_features(task_name, split, feature_lengths, shuffle=shuffle, seed=seed,
                      shard_info=shard_info, num_epochs=num_epochs)
  ds = TaskIdFeatureConverter(task_id)(ds, feature_lengths)
  return ds.skip(skip) if skip else ds


def _mixable(ds: tf.data.Dataset, task_name: str, task_id: int) -> tf.data.Dataset:
  """A task's rows as the same three features for every task, so streams can be mixed."""
  spec = ds.element_spec
  for name in ("inputs", "targets"):
    if name not in spec or spec[name].dtype != tf.int32 or spec[name].shape.rank != 1:
      raise ValueError(f"Task {task_name!r} gives {spec}; training reads int32 'inputs' "
                       "and 'targets' sequences (an encoder-decoder task).")
  task_ids = tf.constant(task_id, tf.int32)
  return ds.map(lambda ex: {"inputs": ex["inputs"], "targets": ex["targets"],
                            "task_ids": task_ids})


def _model_features(batch: Mapping[str, tf.Tensor], bos_id: int) -> dict[str, tf.Tensor]:
  """TaskIdFeatureConverter's model features for a whole padded batch of task features:
  converting row by row costs about as much as the whole task pipeline."""
  targets = batch["targets"]
  return {"encoder_input_tokens": batch["inputs"],
          "decoder_input_tokens": tf.pad(targets[:, :-1], [[0, 0], [1, 0]],
                                         constant_values=bos_id),
          "decoder_target_tokens": targets,
          "decoder_loss_weights": seqio.non_padding_position(targets),
          "task_ids": batch["task_ids"]}


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
    self._batches: Optional[Iterator] = None

  def _dataset(self) -> tf.data.Dataset:
    """This process's batches from `position` on, mixed and batched inside tf.data.

    Every (shard, task) stream feeds `choose_from_datasets`, driven by the rows of
    `rows_for_shard` step after step, so rows are assembled and converted in C++ and
    batches can be prefetched without touching `position`.
    """
    streams = []
    for shard in self.local_shards:
      for task_id, name in enumerate(self.task_names):
        skip = self.position.consumed.get(f"{shard}/{task_id}", 0)
        ds = _task_features(name, self.split, self.feature_lengths, shuffle=self.shuffle,
                            seed=self.seed + 1000003 * task_id,
                            shard_info=seqio.ShardInfo(shard, self.num_input_shards),
                            num_epochs=None)
        streams.append(_mixable(ds.skip(skip), name, task_id))
        logging.info("Opened %s stream %s/%d at example %d", name, shard, task_id, skip)
    num_tasks, first = len(self.task_names), self.position.step

    def choices():
      for start in itertools.count(first, _CHOICE_STEPS):
        yield np.concatenate([self.rows_for_shard(step, shard) + i * num_tasks
                              for step in range(start, start + _CHOICE_STEPS)
                              for i, shard in enumerate(self.local_shards)])

    rows = len(self.local_shards) * self.rows_per_shard
    choice = tf.data.Dataset.from_generator(
        choices, output_signature=tf.TensorSpec([None], tf.int64)).unbatch()
    lengths = {"inputs": self.feature_lengths["inputs"],
               "targets": self.feature_lengths["targets"], "task_ids": []}
    bos_id = TaskIdFeatureConverter().bos_id
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_optimization.map_fusion = True
    return (tf.data.Dataset.choose_from_datasets(streams, choice)
            .padded_batch(rows, lengths, drop_remainder=True)
            .map(lambda batch: _model_features(batch, bos_id))
            .prefetch(tf.data.AUTOTUNE).with_options(options))

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

  def open(self) -> "MixedBatches":
    """Builds the input pipeline now (else the first `next` does): the task
    preprocessors read their settings (gin) while it is built."""
    if self._batches is None:
      self._batches = self._dataset().as_numpy_iterator()
    return self

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = next(self.open()._batches)
    for shard in self.local_shards:
      rows = self.rows_for_shard(self.position.step, shard).tolist()
      for task_id, count in collections.Counter(rows).items():
        key = f"{shard}/{task_id}"
        self.position.consumed[key] = self.position.consumed.get(key, 0) + count
    self.position.step += 1
    return {k: batch[k] for k in MODEL_FEATURES}


class BankPosition(list):
  """Each run's DataPosition, in the bank's order."""

  def to_json(self) -> list[dict]:
    return [position.to_json() for position in self]


class BankBatches:
  """A bank's batches: each run's own MixedBatches (its tasks, its seed, its position),
  stacked on a leading run axis, [R, B, ...]."""

  def __init__(self, runs: Sequence[MixedBatches]):
    self.runs = list(runs)

  @property
  def position(self) -> BankPosition:
    return BankPosition(run.position for run in self.runs)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batches = [next(run) for run in self.runs]
    return {k: np.stack([batch[k] for batch in batches]) for k in MODEL_FEATURES}
