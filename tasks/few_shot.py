"""k-shot training subsets of any registered task, for the paper's few-shot runs.

`register_few_shot("mpt_glue_rte", k=16, seed=3)` registers (once) and returns the name
`mpt_glue_rte_k16_s3`: a seqio Task like its parent whose `train` split is k examples of
the parent's `train`, and whose other splits are the parent's. The subset depends only on
(k, seed) and the parent's data: positions are drawn by `permutation` in the parent
source's deterministic read order, never by tf.data's buffer shuffle.

k counts source examples, before preprocessing (a ReCoRD query with two answers becomes
two training examples). Asking for more examples than the parent's `train` has is an
error rather than a silently smaller "k-shot" run.
"""

import re
from typing import Optional, Sequence

import gin
import numpy as np
import seqio
import tensorflow as tf

from tasks import registry


def permutation(size: int, seed: int) -> np.ndarray:
  """A permutation of range(size) that never changes across numpy versions.

  numpy freezes the legacy RandomState stream (`Generator` streams may change), so the
  same seed selects the same examples on every machine and every release.
  """
  return np.random.RandomState(seed).permutation(size)


def take_positions(ds: tf.data.Dataset, positions: np.ndarray, size: int) -> tf.data.Dataset:
  """The examples of `ds` (a dataset of `size` examples) at `positions`, in read order."""
  keep = np.zeros(size, dtype=bool)
  keep[positions] = True
  keep = tf.constant(keep)
  return ds.enumerate().filter(lambda i, _: tf.gather(keep, i)).map(lambda _, ex: ex)


def count_examples(source: seqio.DataSource, split: str) -> int:
  """The size of a split: the source's own count, else one pass over the data."""
  size = source.num_input_examples(split)
  if size is None or not np.isfinite(size):
    size = int(source.get_dataset(split=split, shuffle=False).reduce(0, lambda n, _: n + 1))
  return int(size)


class FewShotSource(seqio.DataSource):
  """The parent source, with `train` cut down to k examples chosen by (k, seed)."""

  def __init__(self, parent: seqio.DataSource, k: int, seed: int, parent_name: str):
    if k < 1:
      raise ValueError(f"k must be a positive number of examples, got k={k}.")
    size = count_examples(parent, "train")
    if k > size:
      raise ValueError(f"Task {parent_name!r} has {size} training examples, fewer than k={k}; "
                       f"choose k <= {size}.")
    self._parent = parent
    self.parent_name = parent_name
    self._size = size
    self._positions = permutation(size, seed)[:k]
    super().__init__(splits=parent.splits)

  @property
  def positions(self) -> np.ndarray:
    """Where the k examples sit in the parent's `train`, in the order they were drawn."""
    return self._positions

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def list_shards(self, split: str):
    return self._parent.list_shards(split)

  def num_input_examples(self, split: str) -> Optional[int]:
    if split == "train":
      return len(self._positions)
    return self._parent.num_input_examples(split)

  def get_dataset(self, split: str = "train", shuffle: bool = True, seed: Optional[int] = None,
                  shard_info: Optional[seqio.ShardInfo] = None, *, sequence_length=None,
                  use_cached=False, num_epochs=1) -> tf.data.Dataset:
    del sequence_length, use_cached, num_epochs  # like seqio's own sources
    if split != "train":
      return self._parent.get_dataset(split=split, shuffle=shuffle, seed=seed,
                                      shard_info=shard_info)
    ds = take_positions(self._parent.get_dataset(split="train", shuffle=False),
                        self._positions, self._size)
    if shard_info:
      ds = ds.shard(shard_info.num_shards, shard_info.index)
    return ds


_NAME = re.compile(r"(.+)_k(\d+)_s(\d+)")


def few_shot_name(task_name: str, k: int, seed: int) -> str:
  """The k-shot variant's name, `<task>_k<k>_s<seed>`; `parse_few_shot_name` inverts it."""
  return f"{task_name}_k{k}_s{seed}"


def parse_few_shot_name(name: str) -> Optional[tuple[str, int, int]]:
  """(parent task, k, seed) of a k-shot variant's name, or None for any other name."""
  match = _NAME.fullmatch(name)
  return (match.group(1), int(match.group(2)), int(match.group(3))) if match else None


def register_few_shot(task_name: str, k: int, seed: int) -> str:
  """Registers the k-shot variant of a task (if not yet registered) and returns its name."""
  name = few_shot_name(task_name, k, seed)
  if name in seqio.TaskRegistry.names():
    return name
  parent = registry.get_task_or_mixture(task_name)
  if not isinstance(parent, seqio.Task):
    raise ValueError(f"{task_name!r} is a mixture; k-shot subsets are drawn per task. Use "
                     f"its tasks: {', '.join(registry.task_names(task_name))}.")
  seqio.TaskRegistry.add_provider(
      name, parent.replace(name=name, source=FewShotSource(parent.source, k, seed, task_name)))
  if registry.class_labels(task_name) is not None:
    registry.register_class_labels(name, lambda: registry.class_labels(task_name))
  metric = registry.primary_metric(task_name)
  if metric is not None:
    registry.register_primary_metric(name, metric)
  return name


def registered_parent(name: str) -> Optional[str]:
  """The task a registered k-shot variant draws from (by its source), else None."""
  source = registry.get_task_or_mixture(name).source
  return source.parent_name if isinstance(source, FewShotSource) else None


def eval_data_task(name: str, split: str) -> str:
  """The task whose `split` a registered task reads: a k-shot variant's splits other than
  `train` are its parent's (so evaluators of the variants of a task can be shared)."""
  parent = registered_parent(name) if split != "train" else None
  return parent or name


def parent_name(name: str) -> str:
  """The task a k-shot variant was drawn from (the name itself if it is not one)."""
  subset = parse_few_shot_name(name)
  return subset[0] if subset else name


@gin.configurable
def few_shot_mixture(tasks: Sequence[str] = gin.REQUIRED, k: int = 16,
                     seed: int = 0) -> str:
  """Registers the k-shot variant of each task and a mixture of them (equal rates, as
  each holds k examples); returns the mixture's name, for
  `DataConfig.mixture_or_task_name`."""
  names = [register_few_shot(task, k, seed) for task in tasks]
  name = few_shot_name("+".join(tasks), k, seed)
  if name not in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.add(name, names, default_rate=1.0)
  return name
