"""What every command shares: t5x.train's flags (gin files and bindings, also as
`--gin.NAME=VALUE`, search paths, the TFDS data directory, a local SentencePiece
model, the multi-host flags) and the start-up: logging, jax.distributed, then gin,
with the run's task modules imported before gin parses.
"""

import contextlib
import ctypes
import dataclasses
import importlib.resources
import logging as std_logging
import os
import pathlib
import signal
import sys
from typing import Sequence

from absl import app
from absl import flags
from absl import logging
import gin
import jax

from tasks import registry

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "Gin file(s) to parse, in order. Relative "
                          "paths are looked up in --gin_search_paths and the package's gin/.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'train.train_steps=10'.")
flags.DEFINE_list("gin_search_paths", [], "Extra directories to look for gin files in.")
flags.DEFINE_string("tfds_data_dir", None, "Where prepared TFDS datasets live (seqio's "
                    "TFDS data dir override), e.g. gs://bucket/tfds.")
flags.DEFINE_string("sentencepiece_model", None, "A local copy of T5's SentencePiece "
                    "model for the task catalog, used instead of its gs:// path (sets "
                    "default_vocabulary.sentencepiece_model_path).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 for "
                    "jax.distributed; omit on Cloud TPU and SLURM, where it is detected.")
flags.DEFINE_integer("process_count", None, "Number of processes (hosts) in the job.")
flags.DEFINE_integer("process_index", None, "This process's index in [0, process_count).")
flags.DEFINE_bool("multi_host", None, "Initialise jax.distributed from the environment "
                  "(Cloud TPU pod slices, SLURM). Detected when left unset.")

# The gin macro naming the modules that register a run's tasks (t5x's
# MIXTURE_OR_TASK_MODULE); they are imported before gin parses the run for real.
TASK_MODULES_MACRO = "TASK_MODULES"
# Set by the pipeline for its stage processes: the pid they must not outlive.
PARENT_PID_ENV = "MPT_JAX_PARENT_PID"
# The flags a command hands on to the processes it starts (the pipeline's stages).
_STAGE_FLAGS = ("gin_search_paths", "tfds_data_dir", "sentencepiece_model",
                "coordinator_address", "process_count", "process_index", "multi_host")


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
  return ["--gin_bindings=" + arg[len("--gin."):] if arg.startswith("--gin.") and "=" in arg
          else arg for arg in argv]


def _on_cloud_tpu_pod() -> bool:
  return bool(os.environ.get("TPU_WORKER_HOSTNAMES", "").count(","))


def _in_slurm_job_of_several_tasks() -> bool:
  return int(os.environ.get("SLURM_NTASKS", "1")) > 1


def initialize_distributed() -> None:
  if FLAGS.coordinator_address:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.process_count,
                               FLAGS.process_index)
  elif FLAGS.multi_host or (FLAGS.multi_host is None and (
      _on_cloud_tpu_pod() or _in_slurm_job_of_several_tasks())):
    jax.distributed.initialize()
  if jax.process_count() > 1:
    logging.info("Process %d of %d", jax.process_index(), jax.process_count())


def is_lead_process() -> bool:
  """Whether this is process 0 of the job, before (or without) jax.distributed."""
  return (FLAGS.process_index or 0) == 0 and os.environ.get("SLURM_PROCID", "0") == "0"


def flag_bindings() -> list[str]:
  """The gin bindings that flags stand for."""
  if not FLAGS.sentencepiece_model:
    return []
  import tasks.vocab  # pylint: disable=g-import-not-at-top,unused-import  (the binding's target)
  return [f"default_vocabulary.sentencepiece_model_path = {FLAGS.sentencepiece_model!r}"]


def task_modules_named(files: Sequence[str], bindings: Sequence[str]) -> list[str]:
  """The TASK_MODULES the gin files and bindings set, read by a first, lenient parse
  (configurables those modules define are not registered yet)."""
  gin.parse_config_files_and_bindings(files, bindings, finalize_config=False,
                                      skip_unknown=True)
  try:
    modules = gin.query_parameter(f"{TASK_MODULES_MACRO}/macro.value")
  except ValueError:
    modules = []
  gin.clear_config()
  return [modules] if isinstance(modules, str) else list(modules)


@dataclasses.dataclass(frozen=True)
class GinConfig:
  """A whole gin configuration, its files then its bindings, that can be put in force
  again (each run of a sweep has its own)."""
  files: tuple[str, ...]
  bindings: tuple[str, ...]

  def extended(self, files: Sequence[str], bindings: Sequence[str]) -> "GinConfig":
    """This configuration with more files (parsed after its own) and bindings (after its
    own)."""
    return GinConfig((*self.files, *files), (*self.bindings, *bindings))

  def parse(self, finalize: bool = True) -> None:
    """Imports the task modules it names, then parses it (on top of what is parsed)."""
    registry.import_task_modules(task_modules_named(self.files, self.bindings))
    gin.parse_config_files_and_bindings(self.files, self.bindings, finalize_config=finalize)

  @contextlib.contextmanager
  def activate(self):
    """Makes this the configuration in force in place of any other, for the block and
    after it (settings read lazily, e.g. by task preprocessors, see it)."""
    with gin.unlock_config():
      gin.clear_config()
      self.parse(finalize=False)
    yield


def add_gin_search_paths(paths: Sequence[str] = ()) -> None:
  """Makes gin find files in `paths`, then in the package's gin/ (`runs/teachers.gin`)."""
  for path in [*paths, str(package_gin_dir())]:
    gin.add_config_file_search_path(path)


def command_gin_config() -> GinConfig:
  """The command line's --gin_file and --gin_bindings (and the flags' bindings)."""
  return GinConfig(tuple(FLAGS.gin_file), (*FLAGS.gin_bindings, *flag_bindings()))


def parse_gin(finalize: bool = True) -> None:
  """Imports the run's task modules, then parses --gin_file and --gin_bindings (and
  the flags' bindings) with the package's gin folder searchable, and locks gin.
  `finalize=False` lets macros stay %gin.REQUIRED (paths a command never reads)."""
  if FLAGS.tfds_data_dir:
    import seqio  # pylint: disable=g-import-not-at-top
    seqio.set_tfds_data_dir_override(FLAGS.tfds_data_dir)
  add_gin_search_paths(FLAGS.gin_search_paths)
  if not FLAGS.gin_file:
    raise app.UsageError("No --gin_file given: name a run, e.g. --gin_file=runs/teachers.gin.")
  command_gin_config().parse(finalize)


class _QuietLibraries:
  """Drops the chatter of orbax, seqio and TF below ERROR so that progress lines stand out
  (among it seqio's advice to cache datasets: runs read tasks uncached on purpose, so any
  task runs without a cache-building job first), and two messages that are not what they
  seem: gin's "Path not found" ERROR, logged for each search path a gin file is not in
  before it is found, and seqio's evaluator warning that lengths "may be insufficient",
  given whatever the data (the input pipeline counts and reports truncation itself)."""
  NOISY = ("/orbax/", "/seqio/", "/tensorflow", "/absl/", "/jax/")
  NOT_WHAT_THEY_SEEM = (("/gin/resource_reader.py", ""),  # every probe, found or not
                        ("/seqio/evaluation.py", "may be* insufficient"))

  def filter(self, record) -> bool:
    if any(path in record.pathname and text in record.getMessage()
           for path, text in self.NOT_WHAT_THEY_SEEM):
      return False
    if record.levelno >= std_logging.ERROR:
      return True
    return not any(part in record.pathname for part in self.NOISY)


def configure_logging() -> None:
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietLibraries())


def stage_flags() -> list[str]:
  """This command's data, vocabulary and multi-host flags, for the stage processes
  it starts (each stage joins jax.distributed the way the pipeline was told to)."""
  forwarded = []
  for name in _STAGE_FLAGS:
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


def die_with_parent() -> None:
  """In a process started by a pipeline: SIGTERM when the pipeline dies, even by SIGKILL
  (Linux's parent-death signal), and an immediate exit if it is already gone."""
  parent = os.environ.get(PARENT_PID_ENV)
  if not parent or not sys.platform.startswith("linux"):
    return
  pr_set_pdeathsig = 1
  ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
  if os.getppid() != int(parent):
    raise SystemExit(f"The pipeline (pid {parent}) that started this stage is gone.")


def start(argv: Sequence[str], distributed: bool = True, finalize_gin: bool = True) -> None:
  """What every command does before its job: logging, jax.distributed, gin."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {list(argv[1:])}; use --gin_bindings.")
  die_with_parent()
  configure_logging()
  if distributed:
    initialize_distributed()
  parse_gin(finalize_gin)


def run(main) -> None:
  """absl's app.run, with t5x's `--gin.NAME=VALUE` shorthand understood."""
  app.run(main, argv=rewrite_gin_shorthand(sys.argv))
