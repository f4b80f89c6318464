"""A catalog task described as data (`TaskSpec`), and the seqio Task built from it."""

import dataclasses
from typing import Callable, Mapping, Optional, Sequence

import seqio

from tasks.catalog import formats
from tasks.catalog import splits


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """One dataset of the paper as a text-to-text task.

  Attributes:
    name: the registered name, `mpt_<suite>_<dataset>` or `mpt_<dataset>`.
    prefix: the task name inputs start with, T5's and ATTEMPT's (see formats.py).
    tfds_names: pinned TFDS names ("glue/rte:2.0.0"); several are concatenated.
    parts: `train`/`validation`/`test` as split rules (see splits.py).
    template: the input format, `{field}` slots filled from the example.
    format: makes the preprocessor from the template (see formats.py).
    postprocess_fn: target or prediction text to the metric's input.
    metric_fns: seqio metric functions.
    labels: the label words of a classification task, in class-id order.
    numbered_labels: whether the ATTEMPT style writes class ids for them (not for labels
      that already are answer letters or numbers).
    paper_metric: the metric the paper's tables report for this task.
  """
  name: str
  prefix: formats.TaskPrefix
  tfds_names: Sequence[str]
  parts: Mapping[str, splits.Part]
  template: str
  format: formats.Format
  postprocess_fn: Callable
  metric_fns: Sequence[Callable]
  labels: Optional[Sequence[str]] = None
  numbered_labels: bool = True
  paper_metric: str = "accuracy"

  def target_labels(self) -> tuple[str, ...]:
    """The labels as the current text style writes them."""
    return formats.target_labels(self.labels, self.numbered_labels)


def output_features(vocabulary: seqio.Vocabulary) -> dict[str, seqio.Feature]:
  return {"inputs": seqio.Feature(vocabulary, add_eos=True),
          "targets": seqio.Feature(vocabulary, add_eos=True)}


def build_task(spec: TaskSpec, vocabulary: seqio.Vocabulary, name: str) -> seqio.Task:
  """Tokenized `inputs`/`targets` with EOS, keeping `*_pretokenized` text for the metrics."""
  return seqio.Task(
      name,
      source=splits.SplitRuleSource(spec.tfds_names, spec.parts),
      output_features=output_features(vocabulary),
      preprocessors=[spec.format(spec.template), formats.prefixed(spec.prefix),
                     seqio.preprocessors.tokenize,
                     seqio.CacheDatasetPlaceholder(),
                     seqio.preprocessors.append_eos_after_trim],
      postprocess_fn=spec.postprocess_fn,
      metric_fns=list(spec.metric_fns))
