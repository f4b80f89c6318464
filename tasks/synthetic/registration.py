"""Registers the suite with SeqIO: one Task per spec, the pretraining task, mixtures."""

import dataclasses
import functools
from typing import Mapping, Optional

import seqio
import tensorflow as tf

from tasks import registry
from tasks.synthetic import corpus
from tasks.synthetic import metrics
from tasks.synthetic import sampling
from tasks.synthetic import span_corruption
from tasks.synthetic import suite

# Sized for the CPU demo: a few hundred prompt-tuning steps see each source example
# about once; 1,000 target examples leave room for many k-shot draws.
SOURCE_SIZES = {"train": 3000, "validation": 200, "test": 200}
TARGET_SIZES = {"train": 1000, "validation": 200, "test": 200}
PRETRAIN_SIZES = {"train": 20000, "validation": 500}
_CHUNK = 256


@dataclasses.dataclass(frozen=True)
class Registered:
  """The names one `register` call added."""
  source_tasks: tuple[str, ...]
  target_tasks: tuple[str, ...]
  pretrain_task: str
  source_mixture: str
  target_mixture: str
  pretrain_mixture: str


def _check_sizes(what: str, sizes: Mapping[str, int], splits) -> dict[str, int]:
  if set(sizes) != set(splits):
    raise ValueError(f"{what} sizes name splits {sorted(sizes)}; give exactly "
                     f"{sorted(splits)}, e.g. {dict.fromkeys(splits, 100)}.")
  for split, size in sizes.items():
    if not isinstance(size, int) or size < 1:
      raise ValueError(f"{what} size for {split!r} must be a positive int, got {size!r}.")
  return dict(sizes)


def _source(spec: suite.TaskSpec, sizes: Mapping[str, int], suite_seed: int,
            fields=("inputs", "targets")) -> seqio.FunctionDataSource:
  """Examples generated on the fly, in chunks: one Python call per example would
  make tf.data's generator hand-off, not the generation, the bottleneck."""
  signature = {field: tf.TensorSpec((None,), tf.string) for field in fields}

  def chunks(split):
    size = sizes[split]
    for start in range(0, size, _CHUNK):
      chunk = [sampling.example(spec, split, index, suite_seed)
               for index in range(start, min(start + _CHUNK, size))]
      yield {field: [e[field] for e in chunk] for field in fields}

  def dataset_fn(split, shuffle_files, seed=None):
    del shuffle_files, seed  # one ordered stream; seqio shuffles examples
    if split not in sizes:
      raise ValueError(f"Unknown split {split!r} for synthetic task {spec.name!r}; "
                       f"it has {sorted(sizes)}.")
    return tf.data.Dataset.from_generator(
        lambda: chunks(split), output_signature=signature).unbatch()

  return seqio.FunctionDataSource(dataset_fn, splits=tuple(sizes),
                                  num_input_examples=dict(sizes))


def _check_free(names, overwrite: bool) -> None:
  """Refuses, before registering anything, names that SeqIO already has."""
  taken = [n for n in names
           if n in seqio.TaskRegistry.names() or n in seqio.MixtureRegistry.names()]
  if taken and not overwrite:
    raise ValueError(f"SeqIO already has {taken}; pass overwrite=True to replace them, "
                     "or another prefix.")


def _add_task(name, **kwargs):
  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.add(name, **kwargs)


def _add_mixture(name, tasks):
  if name in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(name)
  seqio.MixtureRegistry.add(name, tasks)


def register(vocabulary: Optional[seqio.Vocabulary] = None, *, prefix: str = "synth",
             seed: int = 0, source_sizes: Mapping[str, int] = SOURCE_SIZES,
             target_sizes: Mapping[str, int] = TARGET_SIZES,
             pretrain_sizes: Mapping[str, int] = PRETRAIN_SIZES,
             noise_density: float = 0.15, mean_noise_span_length: float = 3.0,
             overwrite: bool = False) -> Registered:
  """Registers every suite task as `{prefix}_{name}`, `{prefix}_pretrain` and the
  mixtures `{prefix}_source` and `{prefix}_target` (examples-proportional), and
  `{prefix}_pretrain_multitask`: half span corruption, half the source tasks.

  Args:
    vocabulary: defaults to `seqio.ByteVocabulary()`; a SentencePiece model trained
      on the suite can be swapped in (it needs extra_ids for span corruption).
    prefix: task-name prefix, so several vocabularies or sizes can coexist.
    seed: the suite's seed; every example is a function of it and its index.
    source_sizes, target_sizes, pretrain_sizes: examples per split.
    noise_density, mean_noise_span_length: span corruption of `{prefix}_pretrain`.
    overwrite: replace tasks already registered under these names.
  """
  vocabulary = vocabulary or seqio.ByteVocabulary()
  span_corruption.check_sentinels(vocabulary, sampling.MAX_INPUT_BYTES, noise_density,
                                  mean_noise_span_length)
  sizes = {"source": _check_sizes("source", source_sizes, sampling.SPLITS),
           "target": _check_sizes("target", target_sizes, sampling.SPLITS)}
  pretrain_sizes = _check_sizes("pretrain", pretrain_sizes, ("train", "validation"))
  pretrain = f"{prefix}_pretrain"
  _check_free([f"{prefix}_{spec.name}" for spec in suite.TASKS]
              + [pretrain, f"{prefix}_source", f"{prefix}_target",
                 f"{prefix}_pretrain_multitask"], overwrite)
  features = {"inputs": seqio.Feature(vocabulary, add_eos=True),
              "targets": seqio.Feature(vocabulary, add_eos=True)}
  names = {"source": [], "target": []}
  for spec in suite.TASKS:
    name = f"{prefix}_{spec.name}"
    _add_task(
        name, source=_source(spec, sizes[spec.role], seed),
        output_features=features,
        preprocessors=[seqio.preprocessors.tokenize,
                       seqio.preprocessors.append_eos_after_trim],
        metric_fns=[metrics.accuracy if spec.labels else metrics.squad])
    if spec.labels:
      registry.register_class_labels(name, spec.labels)
    registry.register_primary_metric(name, "accuracy" if spec.labels else "f1")
    names[spec.role].append(name)

  # The clean passage is the only field: span corruption derives inputs from it.
  _add_task(
      pretrain,
      source=_source(corpus.PRETRAIN, pretrain_sizes, seed, fields=("targets",)),
      output_features=features,
      preprocessors=[
          seqio.preprocessors.tokenize,
          functools.partial(span_corruption.span_corruption,
                            noise_density=noise_density,
                            mean_noise_span_length=mean_noise_span_length, seed=seed),
          seqio.preprocessors.append_eos_after_trim],
      metric_fns=[])

  for role in ("source", "target"):
    rates = [(name, sizes[role]["train"]) for name in names[role]]
    _add_mixture(f"{prefix}_{role}", rates)
  # Like T5 1.0's pretraining mixture: the backbone also learns the source tasks
  # (supervised) beside the corpus; the target tasks stay unseen.
  source_total = len(names["source"]) * sizes["source"]["train"]
  _add_mixture(f"{prefix}_pretrain_multitask",
               [(pretrain, source_total)] + [(name, sizes["source"]["train"])
                                             for name in names["source"]])
  return Registered(tuple(names["source"]), tuple(names["target"]), pretrain,
                    f"{prefix}_source", f"{prefix}_target",
                    f"{prefix}_pretrain_multitask")
