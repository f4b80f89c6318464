"""TFDS datasets as tasks read them: prepared, or an error that says how to prepare them."""

from typing import Optional

import seqio


class DatasetNotPreparedError(FileNotFoundError):
  """A TFDS dataset (or one of its splits) is not in the data dir a task reads."""


def require_prepared(loader: seqio.utils.LazyTfdsLoader, tfds_split: Optional[str] = None,
                     reader: str = "A task") -> None:
  """Raises naming the dataset, the split, the data dir and the `tfds build` command when
  `loader`'s dataset (or its `tfds_split`) is not prepared."""
  builder = loader.builder
  if builder.is_prepared() and (tfds_split is None or tfds_split in builder.info.splits):
    return
  data_dir = loader.data_dir or builder._data_dir_root  # pylint: disable=protected-access
  missing = f"its {tfds_split!r} split" if tfds_split else "it"
  raise DatasetNotPreparedError(
      f"{reader} reads the TFDS dataset {loader.name}, which is not prepared in {data_dir} "
      f"({missing} is missing). Prepare it with\n"
      f"  tfds build {loader.name.split(':')[0]} --data_dir={data_dir}\n"
      "or point --tfds_data_dir at the directory that holds it.")
