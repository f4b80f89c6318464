"""The task catalog on mocked TFDS data, for in-process tests (`mocked_tfds`) and for
commands run as subprocesses (tests/mocked_tfds_site).

The mocked catalog: seqio's TFDS sources take split sizes from `builder.info.splits`.
Under `tfds.testing.mock_data` a builder only has split metadata if a
`dataset_info.json` exists in the mock data dir (MockPolicy.USE_FILES), so
`mocked_tfds` writes one per catalog dataset: the builder's real features plus
invented split sizes (`mock_size`). It serves `_as_dataset` from `fake_dataset`, whose
examples say where they come from: every text is "<dataset[/config]> <split>
<position> <feature path>", so a test traces any preprocessed example back to its
TFDS split and position. Class ids cycle through the classes, other integers are
position // 2 (MultiRC and ReCoRD groups of two), floats are scores in [0, 5) off the
0.2 grid, and sequences have two elements.

This module imports no command module, so a process that runs `python -m mpt_jax.train`
can load it first.
"""

import contextlib
import re
import tempfile

import numpy as np
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

import tasks.catalog
from tasks.catalog import splits

TRAIN_EXTRA = 4  # training examples left over after the 1,000 held out
HALVED = 9  # an odd validation set, so the halves differ in size
OTHER = 5
TRACE = re.compile(r"(\S+) (\S+) (\d+) ")


def mock_size(spec, tfds_split: str) -> int:
  """Invented size of a TFDS split: just big enough for the spec's split rule."""
  sizes = [OTHER]
  for part in spec.parts.values():
    if part.tfds_split != tfds_split or not part.permuted:
      continue
    if part.start is splits.HALF or part.stop is splits.HALF:
      sizes.append(HALVED)
    else:  # a `large` rule: 1,000 held out, the rest trained on (Yelp's cap is not reached)
      sizes.append(splits.HELD_OUT + TRAIN_EXTRA)
  return max(sizes)


def dataset_sizes() -> dict[str, dict[str, int]]:
  """{tfds name: {tfds split: size}} over every catalog spec."""
  sizes = {}
  for spec in tasks.catalog.SPECS:
    for name in spec.tfds_names:
      for part in spec.parts.values():
        sizes.setdefault(name, {})[part.tfds_split] = mock_size(spec, part.tfds_split)
  return sizes


def _fake(feature, origin: str, positions: tf.Tensor, path: str):
  """The values of `feature` for all `positions` at once ([n, ...] tensors)."""
  if isinstance(feature, tfds.features.FeaturesDict):
    return {key: _fake(f, origin, positions, f"{path}/{key}".lstrip("/"))
            for key, f in feature.items()}
  if isinstance(feature, tfds.features.Sequence):
    elements = [_fake(feature.feature, origin, positions, f"{path}.{j}") for j in range(2)]
    return tf.nest.map_structure(lambda *xs: tf.stack(xs, axis=1), *elements)
  if isinstance(feature, tfds.features.ClassLabel):
    return positions % feature.num_classes
  dtype = feature.tf_dtype
  if dtype == tf.string:
    return tf.strings.join([origin, tf.strings.as_string(positions), path], " ")
  if dtype.is_floating:
    return tf.cast(positions * 37 % 500, dtype) / 100
  if dtype.is_bool:
    return positions % 2 == 0
  return tf.cast(positions // 2, dtype)


def fake_dataset(builder, split, decoders=None, read_config=None, shuffle_files=False):
  """Mock of `FileReaderBuilder._as_dataset`: the split's examples, in position order."""
  del decoders, read_config, shuffle_files
  config = builder.builder_config
  origin = f"{builder.name}/{config.name} {split}" if config else f"{builder.name} {split}"
  positions = tf.range(builder.info.splits[split].num_examples, dtype=tf.int64)
  return tf.data.Dataset.from_tensor_slices(_fake(builder.info.features, origin, positions, ""))


def write_metadata(data_dir: str) -> None:
  for name, sizes in dataset_sizes().items():
    builder = tfds.builder(name, data_dir=data_dir)
    template = tfds.core.ShardedFileTemplate(
        data_dir=builder.data_dir, template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
        dataset_name=builder.name, filetype_suffix="tfrecord")
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[size], num_bytes=0,
                            filename_template=template) for split, size in sizes.items()]))
    tf.io.gfile.makedirs(builder.data_dir)
    builder.info.write_to_directory(builder.data_dir)


@contextlib.contextmanager
def mocked_tfds():
  """Catalog datasets served by `fake_dataset`, with their split metadata written."""
  # seqio memoizes builders by (name, data dir) across sources; builders made outside
  # this mock must not leak in, nor mocked ones out.
  seqio.utils.LazyTfdsLoader._MEMOIZED_BUILDERS.clear()  # pylint: disable=protected-access
  with tempfile.TemporaryDirectory() as data_dir:
    write_metadata(data_dir)
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_FILES, data_dir=data_dir,
                                as_dataset_fn=fake_dataset):
      yield
  seqio.utils.LazyTfdsLoader._MEMOIZED_BUILDERS.clear()  # pylint: disable=protected-access


def trace(text: str) -> tuple[str, str, int]:
  """(dataset/config, TFDS split, position) of the first fake text in `text`."""
  match = TRACE.search(text)
  assert match, f"no fake example trace in {text!r}"
  return match.group(1), match.group(2), int(match.group(3))


def as_text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def first_text(example) -> str:
  """A raw example's first text (in sorted key order); every text carries the trace."""
  for value in tf.nest.flatten(example):
    if isinstance(value, bytes):
      return value.decode()
    if isinstance(value, np.ndarray) and value.dtype == object and value.size:
      return as_text(value.flat[0])
  raise AssertionError(f"no text feature in {example}")
