"""Look-ups every task module shares: task modules, tasks by name, classification label
sets and primary metrics."""

import difflib
import importlib
from typing import Callable, Optional, Sequence, Union

import seqio

Labels = Union[Sequence[str], Callable[[], Sequence[str]]]
_CLASS_LABELS: dict[str, Labels] = {}
_PRIMARY_METRICS: dict[str, str] = {}


def import_task_modules(names: Sequence[str]) -> None:
  """Imports the modules that register a run's tasks (t5x's MIXTURE_OR_TASK_MODULE)."""
  for name in names:
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise ImportError(f"Cannot import task module {name!r}: {e}") from e


def close_names(name: str, limit: int = 5) -> list[str]:
  known = list(seqio.TaskRegistry.names()) + list(seqio.MixtureRegistry.names())
  return difflib.get_close_matches(name, known, n=limit, cutoff=0.4)


def get_task_or_mixture(name: str) -> Union[seqio.Task, seqio.Mixture]:
  """seqio.get_mixture_or_task with an error that lists the closest registered names.

  A k-shot variant `<task>_k<k>_s<seed>` of a registered task is registered on
  demand, so a process that did not draw it (an eval process) can still name it.
  """
  if name in seqio.MixtureRegistry.names():
    return seqio.MixtureRegistry.get(name)
  if name in seqio.TaskRegistry.names():
    return seqio.TaskRegistry.get(name)
  from tasks import few_shot  # pylint: disable=g-import-not-at-top  (it imports this)
  subset = few_shot.parse_few_shot_name(name)
  if subset and subset[0] in seqio.TaskRegistry.names():
    return seqio.TaskRegistry.get(few_shot.register_few_shot(*subset))
  close = close_names(name)
  hint = f" Close registered names: {', '.join(close)}." if close else ""
  raise ValueError(
      f"No SeqIO task or mixture named {name!r}.{hint} Is the module that registers it "
      "imported (the run's MIXTURE_OR_TASK_MODULE)?")


def task_names(name: str) -> list[str]:
  """The leaf task names of a task or mixture, in seqio's order (a mixture lists its
  tasks sorted by name): the order that fixes a run's task ids."""
  provider = get_task_or_mixture(name)
  if isinstance(provider, seqio.Mixture):
    return [task.name for task in provider.tasks]
  return [provider.name]


def register_class_labels(task_name: str, labels: Labels) -> None:
  """Declares a task's label strings, for rank classification and class-label prompts:
  the strings, or a function that gives them when asked (labels that depend on settings
  gin binds after the task is registered, like the catalog's text format)."""
  _CLASS_LABELS[task_name] = labels if callable(labels) else tuple(labels)


def class_labels(task_name: str) -> Optional[tuple[str, ...]]:
  labels = _CLASS_LABELS.get(task_name)
  return tuple(labels()) if callable(labels) else labels


def label_token_ids(task_name: str) -> Optional[list[list[int]]]:
  """Each label string of a task as target token ids (no EOS), in class-id order; None
  if the task declares no labels."""
  labels = class_labels(task_name)
  if labels is None:
    return None
  vocab = seqio.get_mixture_or_task(task_name).output_features["targets"].vocabulary
  return [list(vocab.encode(label)) for label in labels]


def register_primary_metric(task_name: str, metric: str) -> None:
  """Declares the one metric a results table reports for a task (the paper's)."""
  _PRIMARY_METRICS[task_name] = metric


def primary_metric(task_name: str) -> Optional[str]:
  return _PRIMARY_METRICS.get(task_name)
