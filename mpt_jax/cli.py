"""Flags shared by `python -m mpt_jax.train` and `python -m mpt_jax.eval`, as t5x.train
spells them: gin files and bindings (also `--gin.NAME=VALUE`), search paths, the TFDS
data directory, a local SentencePiece model, and the multi-host flags.
"""

import importlib.resources
import logging as std_logging
import os
import pathlib
import sys
from typing import Sequence

from absl import app
from absl import flags
from absl import logging
import gin
import jax

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "Gin file(s) to parse, in order. Relative "
                          "paths are looked up in --gin_search_paths and the package's gin/.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'train.train_steps=10'.")
flags.DEFINE_list("gin_search_paths", [], "Extra directories to look for gin files in.")
flags.DEFINE_string("tfds_data_dir", None, "Where prepared TFDS datasets live (seqio's "
                    "TFDS data dir override), e.g. gs://bucket/tfds.")
flags.DEFINE_string("sentencepiece_model", None, "A local copy of T5's SentencePiece "
                    "model, used instead of its gs:// path.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 for "
                    "jax.distributed; omit on Cloud TPU and SLURM, where it is detected.")
flags.DEFINE_integer("process_count", None, "Number of processes (hosts) in the job.")
flags.DEFINE_integer("process_index", None, "This process's index in [0, process_count).")
flags.DEFINE_bool("multi_host", None, "Initialise jax.distributed from the environment "
                  "(Cloud TPU pod slices, SLURM). Detected when left unset.")


def package_gin_dir() -> pathlib.Path:
  """The gin files shipped with the package (mpt_jax/gin), or the repository's gin/."""
  try:
    path = pathlib.Path(str(importlib.resources.files("mpt_jax.gin")))
    if path.is_dir():
      return path
  except ModuleNotFoundError:
    pass
  return pathlib.Path(__file__).resolve().parent.parent / "gin"


def rewrite_gin_shorthand(argv: Sequence[str]) -> list[str]:
  """`--gin.MODEL_DIR="'/tmp/x'"` -> `--gin_bindings=MODEL_DIR='/tmp/x'` (t5x's style)."""
  out = []
  for arg in argv:
    if arg.startswith("--gin.") and "=" in arg:
      out.append("--gin_bindings=" + arg[len("--gin."):])
    else:
      out.append(arg)
  return out


def _on_cloud_tpu_pod() -> bool:
  return bool(os.environ.get("TPU_WORKER_HOSTNAMES", "").count(","))


def initialize_distributed() -> None:
  if FLAGS.coordinator_address:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.process_count,
                               FLAGS.process_index)
  elif FLAGS.multi_host or (FLAGS.multi_host is None and (
      _on_cloud_tpu_pod() or "SLURM_NTASKS" in os.environ and
      int(os.environ["SLURM_NTASKS"]) > 1)):
    jax.distributed.initialize()
  if jax.process_count() > 1:
    logging.info("Process %d of %d", jax.process_index(), jax.process_count())


def guard_gin_resource_reader() -> None:
  """Makes gin's package-resource lookup tolerate namespace packages.

  gin tries 'runs/common.gin' as the resource 'common.gin' of a package 'runs'; if the
  working directory holds a plain 'runs/' folder (a namespace package, whose spec
  has no origin) gin's check raises TypeError instead of answering "not found".
  """
  readers = gin.config._FILE_READERS  # pylint: disable=protected-access
  for i, (reader, exists) in enumerate(readers):
    if getattr(exists, "__module__", "") == "gin.resource_reader":
      def safe_exists(path, exists=exists):
        try:
          return exists(path)
        except TypeError:
          return False
      safe_exists.__module__ = __name__
      readers[i] = (reader, safe_exists)


def parse_gin() -> None:
  """Parses --gin_file and --gin_bindings with the package's gin folder searchable."""
  guard_gin_resource_reader()
  if FLAGS.sentencepiece_model:
    os.environ["MPT_SENTENCEPIECE_MODEL"] = FLAGS.sentencepiece_model
  if FLAGS.tfds_data_dir:
    import seqio  # pylint: disable=g-import-not-at-top
    seqio.set_tfds_data_dir_override(FLAGS.tfds_data_dir)
  for path in [*FLAGS.gin_search_paths, str(package_gin_dir())]:
    gin.add_config_file_search_path(path)
  if not FLAGS.gin_file:
    raise ValueError("No --gin_file given: name a run, e.g. --gin_file=runs/teachers.gin.")
  gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_bindings,
                                      finalize_config=True)


class _QuietLibraries:
  """Drops the chatter of orbax, seqio and TF (below ERROR) so that progress lines
  stand out; warnings about truncated inputs are kept."""
  NOISY = ("/orbax/", "/seqio/", "/tensorflow", "/absl/", "/jax/")
  KEEP = ("truncat", "insufficient")

  def filter(self, record) -> bool:
    if record.levelno >= std_logging.ERROR:
      return True
    if not any(part in record.pathname for part in self.NOISY):
      return True
    return record.levelno >= std_logging.WARNING and any(
        word in record.getMessage() for word in self.KEEP)


def configure_logging() -> None:
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietLibraries())


def forwarded_flags() -> list[str]:
  """This command's data, vocabulary and multi-host flags, for the stage processes
  it starts (each stage joins jax.distributed the way the pipeline was told to)."""
  names = ("gin_search_paths", "tfds_data_dir", "sentencepiece_model",
           "coordinator_address", "process_count", "process_index", "multi_host")
  forwarded = []
  for name in names:
    value = FLAGS[name].value
    if value is None or value == []:
      continue
    if isinstance(value, bool):
      forwarded.append(f"--{name}" if value else f"--no{name}")
    elif isinstance(value, list):
      forwarded.append(f"--{name}={','.join(value)}")
    else:
      forwarded.append(f"--{name}={value}")
  return forwarded


def start(argv: Sequence[str], distributed: bool = True) -> None:
  """What every command does before its job: logging, jax.distributed, gin."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {list(argv[1:])}; use --gin_bindings.")
  configure_logging()
  if distributed:
    initialize_distributed()
  parse_gin()


def run(main) -> None:
  """absl's app.run, with t5x's `--gin.NAME=VALUE` shorthand understood."""
  app.run(main, argv=rewrite_gin_shorthand(sys.argv))
