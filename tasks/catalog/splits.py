"""The paper's split rules (it follows ATTEMPT), and the seqio DataSource that applies them.

Every catalog task exposes `train`, `validation` (the paper's dev, for model selection) and
`test` (what the tables report):
* `small`: the official validation set, permuted with seed 42, split in half: first half
  `validation`, second half `test` (odd sizes give `test` the extra example);
* `large`: the first 1,000 examples of the seed-42 permutation of `train` are `validation`,
  the rest `train` (Yelp keeps only the next 100,000); the official validation set (Yelp
  and AG News: their test set) is `test`;
* `own`: the dataset's own three splits, renamed where needed (MNLI: validation_mismatched
  and validation_matched; PAWS, OpenBookQA, ARC, ANLI: train/validation/test).

ATTEMPT shuffles with seed 42 and slices. Doing that with `tf.data.Dataset.shuffle` would
tie the halves to the buffer size and the TF version; instead positions are drawn with
`few_shot.permutation` (numpy's frozen RandomState stream) over the split's size from the
TFDS metadata, and picked out of the split read in TFDS's canonical order (no file
shuffling, one file at a time). So a dataset version always splits the same way on every
machine, and the parts of one TFDS split are disjoint by construction. Selected examples
come out in canonical order; seqio's shuffle buffer shuffles `train` afterwards.
"""

import dataclasses
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from tasks import few_shot
from tasks import tfds_data

SEED = 42
HELD_OUT = 1000


class _Half:
  """A Part bound: the middle of the split, rounded down."""


HALF = _Half()


@dataclasses.dataclass(frozen=True)
class Part:
  """Positions [start, stop) of the seed-42 permutation of a TFDS split, or all of it."""
  tfds_split: str
  start: Union[int, _Half] = 0
  stop: Union[int, _Half, None] = None  # None: the end
  permuted: bool = False

  def positions(self, size: int) -> Optional[np.ndarray]:
    """The selected positions among `size` examples, or None for the whole split in order."""
    if not self.permuted:
      return None
    start, stop = (size // 2 if b is HALF else b for b in (self.start, self.stop))
    return few_shot.permutation(size, SEED)[start:stop]

  def count(self, size: int) -> int:
    positions = self.positions(size)
    return size if positions is None else len(positions)


def small(train: str = "train", validation: str = "validation") -> dict[str, Part]:
  return {"train": Part(train),
          "validation": Part(validation, 0, HALF, permuted=True),
          "test": Part(validation, HALF, None, permuted=True)}


def large(train: str = "train", test: str = "validation",
          train_cap: Optional[int] = None) -> dict[str, Part]:
  stop = HELD_OUT + train_cap if train_cap else None
  return {"train": Part(train, HELD_OUT, stop, permuted=True),
          "validation": Part(train, 0, HELD_OUT, permuted=True),
          "test": Part(test)}


def own(train: str = "train", validation: str = "validation",
        test: str = "test") -> dict[str, Part]:
  return {"train": Part(train), "validation": Part(validation), "test": Part(test)}


class SplitRuleSource(seqio.DataSource):
  """TFDS data (one dataset, or several concatenated, like ANLI's rounds) under split rules.

  Reads through seqio's LazyTfdsLoader, so seqio's TFDS data-dir override (what the
  commands' `--tfds_data_dir` sets) applies as for any seqio task. It reads only the data
  dir, never TFDS's public bucket: a run uses no network it was not pointed at.
  """

  def __init__(self, tfds_names: Sequence[str], parts: Mapping[str, Part]):
    self._loaders = [seqio.utils.LazyTfdsLoader(name) for name in tfds_names]
    self._parts = dict(parts)
    super().__init__(splits=tuple(parts))

  @property
  def tfds_names(self) -> list[str]:
    return [loader.name for loader in self._loaders]

  def part(self, split: str) -> Part:
    if split not in self._parts:
      raise ValueError(f"Unknown split {split!r}; this task has {', '.join(self._parts)}.")
    return self._parts[split]

  def tfds_size(self, tfds_split: str) -> int:
    """Examples in a TFDS split (summed over the concatenated datasets), from metadata."""
    for loader in self._loaders:
      tfds_data.require_prepared(loader, tfds_split)
    size = sum(loader.size(tfds_split) for loader in self._loaders)
    if not np.isfinite(size):  # seqio's LazyTfdsLoader reports an unknown size as inf
      raise ValueError(f"The TFDS metadata of {', '.join(self.tfds_names)} gives no size for "
                       f"split {tfds_split!r}, which the split rules need; prepare the "
                       "dataset with `tfds build` so its dataset_info.json has one.")
    return int(size)

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def list_shards(self, split: str) -> list[str]:
    """Names of the TFDS splits read; any split can be sharded by example."""
    return [f"{name}:{self.part(split).tfds_split}" for name in self.tfds_names]

  def num_input_examples(self, split: str) -> int:
    part = self.part(split)
    return part.count(self.tfds_size(part.tfds_split))

  def positions(self, split: str) -> Optional[np.ndarray]:
    """Where a split's examples sit in its TFDS split (None: all of it)."""
    part = self.part(split)
    return part.positions(self.tfds_size(part.tfds_split))

  def _read(self, tfds_split: str, shuffle_files: bool, seed: Optional[int]) -> tf.data.Dataset:
    read_config = tfds.ReadConfig(shuffle_seed=seed, skip_prefetch=True)
    if not shuffle_files:
      read_config.interleave_cycle_length = 1  # TFDS's canonical order
    datasets = [tfds.load(loader.name, split=tfds_split, data_dir=loader.data_dir,
                          shuffle_files=shuffle_files, read_config=read_config)
                for loader in self._loaders]
    ds = datasets[0]
    for other in datasets[1:]:
      ds = ds.concatenate(other)
    return ds

  def get_dataset(self, split: str = "train", shuffle: bool = True, seed: Optional[int] = None,
                  shard_info: Optional[seqio.ShardInfo] = None, *, sequence_length=None,
                  use_cached=False, num_epochs=1) -> tf.data.Dataset:
    del sequence_length, use_cached, num_epochs  # like seqio's own sources
    part = self.part(split)
    positions = self.positions(split)
    if positions is None:
      ds = self._read(part.tfds_split, shuffle_files=shuffle, seed=seed)
    else:
      ds = few_shot.take_positions(self._read(part.tfds_split, False, None), positions,
                                   self.tfds_size(part.tfds_split))
    if shard_info:
      ds = ds.shard(shard_info.num_shards, shard_info.index)
    return ds
