"""Task ids for t5x's data pipeline: t5x reads a SeqIO mixture as one stream, so each
example must already carry the id of its task (its index in the run's task list)."""

from typing import Sequence

import seqio
import tensorflow as tf

from mpt_jax.runtime.features import TASK_IDS
from tasks import registry

SUFFIX = "_with_task_ids"


def task_copy_name(task_name: str, task_id: int) -> str:
  """The copy of `task_name` whose examples carry `task_id`. The id is in the name: a
  task has another id in another run (toy_vowel is 2 in one mixture, 0 alone), and a
  process may register both."""
  return f"{task_name}_with_task_id_{task_id}"


def _add_task_id(task_id: int):
  def add(ds: tf.data.Dataset) -> tf.data.Dataset:
    return ds.map(lambda ex: {**ex, TASK_IDS: tf.constant([task_id], tf.int32)})
  return add


def with_task_ids(mixture_or_task_name: str, task_modules: Sequence[str] = ()) -> str:
  """Registers a copy of the task (or of each of the mixture's tasks, in the mixture's
  order) whose examples carry `task_ids`, and returns the name to train on."""
  registry.import_task_modules(task_modules)
  names = registry.task_names(mixture_or_task_name)
  copies = []
  for task_id, name in enumerate(names):
    copy = task_copy_name(name, task_id)
    if copy not in seqio.TaskRegistry.names():
      task = seqio.get_mixture_or_task(name)
      # An output feature, since a seqio Mixture keeps only those; a length-1 sequence,
      # since seqio's evaluator measures every feature's length.
      features = {**task.output_features, TASK_IDS: seqio.Feature(
          seqio.PassThroughVocabulary(1), add_eos=False, dtype=tf.int32, required=False)}
      seqio.TaskRegistry.add_provider(copy, task.replace(
          name=copy, preprocessors=[*task.preprocessors, _add_task_id(task_id)],
          output_features=features))
      for register, value in ((registry.register_class_labels,
                               registry.class_labels(name)),
                              (registry.register_primary_metric,
                               registry.primary_metric(name))):
        if value is not None:
          register(copy, value)
    copies.append(copy)
  if len(names) == 1 and names[0] == mixture_or_task_name:
    return copies[0]
  mixture = f"{mixture_or_task_name}{SUFFIX}"
  if mixture not in seqio.MixtureRegistry.names():
    provider = seqio.get_mixture_or_task(mixture_or_task_name)
    seqio.MixtureRegistry.add(
        mixture, [(copy, provider.get_rate(seqio.get_mixture_or_task(name)))
                  for copy, name in zip(copies, names)])
  return mixture
