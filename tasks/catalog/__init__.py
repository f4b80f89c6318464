"""The paper's datasets as SeqIO tasks and mixtures over TFDS; importing registers them.

Name it as a run's task module (t5x's MIXTURE_OR_TASK_MODULE): `import tasks.catalog`
registers every task with the default vocabulary (tasks/vocab.py). The README's "Task
catalog" section lists the tasks, their TFDS sources, split rules, formats and metrics.
"""

from typing import Optional

import seqio

from tasks import registry
from tasks import vocab
from tasks.catalog import glue
from tasks.catalog import mixtures
from tasks.catalog import others
from tasks.catalog import qa
from tasks.catalog import spec
from tasks.catalog import superglue

SPECS: tuple[spec.TaskSpec, ...] = glue.SPECS + superglue.SPECS + qa.SPECS + others.SPECS
SPEC_BY_NAME = {s.name: s for s in SPECS}


def register_all(vocabulary: Optional[seqio.Vocabulary] = None, name_suffix: str = "",
                 mixture_cap: Optional[int] = None) -> list[str]:
  """Registers every catalog task and mixture, each name followed by `name_suffix`.

  Re-registering a suffix replaces its earlier tasks and mixtures, so tests can register
  a copy with a small vocabulary (`register_all(seqio.ByteVocabulary(), "_bytes")`) as
  often as they like. Returns the registered names, tasks first.

  Args:
    vocabulary: tokenizes `inputs` and `targets`; default: `vocab.DeferredVocabulary()`.
    name_suffix: appended to every task and mixture name.
    mixture_cap: caps each task's mixing weight at this many examples; None defers to the
      gin-configurable `examples_proportional_rate.maximum` (uncapped by default).
  """
  vocabulary = vocabulary or vocab.DeferredVocabulary()
  names = []
  for task_spec in SPECS:
    name = task_spec.name + name_suffix
    seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add_provider(name, spec.build_task(task_spec, vocabulary, name))
    if task_spec.labels is not None:
      registry.register_class_labels(name, task_spec.target_labels)
    registry.register_primary_metric(name, task_spec.paper_metric)
    names.append(name)
  for mixture_name, task_names in mixtures.MIXTURES.items():
    name = mixture_name + name_suffix
    seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add_provider(name, mixtures.build_mixture(
        name, [t + name_suffix for t in task_names], mixture_cap))
    names.append(name)
  return names


register_all()
