"""A run's data, checked before anything compiles: each split it reads is prepared and has
examples, each vocabulary can be read, and how many examples the feature lengths cut is
counted and reported rather than left to happen silently."""

import dataclasses
import inspect
import logging
from typing import Mapping, Optional, Sequence

import seqio

from tasks import few_shot
from tasks import registry
from tasks import tfds_data

# Examples read per split: enough for a truncation share, cheap on every start-up.
SAMPLE = 1000
# seqio adds EOS within the lengths; it never needs the lengths to preprocess.
_LENGTH_NEUTRAL = (seqio.preprocessors.append_eos_after_trim, seqio.preprocessors.append_eos)


class DataError(ValueError):
  """A run's data cannot be read as configured."""


@dataclasses.dataclass(frozen=True)
class SplitSample:
  """The first examples of a task's split, after preprocessing and before trimming."""
  task: str
  split: str
  examples: int  # read, at most SAMPLE
  complete: bool  # whether that was the whole split
  too_long: Mapping[str, int]  # feature -> examples longer than its length
  longest: Mapping[str, int]  # feature -> longest sequence seen


def check_prepared(task: seqio.Task, split: str) -> None:
  """A task's TFDS data is prepared: seqio's TFDS sources are checked here, the catalog's
  sources check themselves when asked for a split's size."""
  if isinstance(task.source, seqio.TfdsDataSource):
    tfds_data.require_prepared(task.source.tfds_dataset, reader=f"Task {task.name!r}")
  else:
    task.source.num_input_examples(split)


def _vocabulary_file(vocabulary: seqio.Vocabulary) -> str:
  """The model file a vocabulary reads (a DeferredVocabulary's choice), else its class."""
  built = getattr(vocabulary, "vocabulary", vocabulary)
  return getattr(built, "sentencepiece_model_file", type(built).__name__)


def check_vocabularies(task: seqio.Task) -> None:
  """Reads each output feature's vocabulary now, so a missing model file (or T5's
  public gs:// model on a machine without access) stops the run with its name."""
  for name, feature in task.output_features.items():
    try:
      feature.vocabulary.vocab_size  # pylint: disable=pointless-statement
    except Exception as e:  # pylint: disable=broad-except  (any reader's failure)
      raise DataError(
          f"Cannot read the vocabulary of task {task.name!r} ({name}: "
          f"{_vocabulary_file(feature.vocabulary)}): {e}\nOn a machine without access to "
          "that path, pass a local copy of the SentencePiece model: "
          "--sentencepiece_model=/path/to/spiece.model.") from e


def _shapes_itself(task: seqio.Task) -> bool:
  """Whether a preprocessor makes examples of the lengths it is given (span corruption):
  such a task cannot be read untrimmed, and it cuts nothing."""
  return any("sequence_length" in inspect.signature(p).parameters
             for p in task.preprocessors if p not in _LENGTH_NEUTRAL)


def sample_split(task: seqio.Task, split: str, feature_lengths: Mapping[str, int],
                 limit: int = SAMPLE) -> SplitSample:
  """Reads the first `limit` examples of a split and counts those the lengths cut."""
  shaped = _shapes_itself(task)
  ds = task.get_dataset(dict(feature_lengths) if shaped else None, split=split, shuffle=False,
                        use_cached=False, trim_output_features=shaped, num_epochs=1)
  features = [f for f in feature_lengths if f in task.output_features]
  too_long, longest, count = dict.fromkeys(features, 0), dict.fromkeys(features, 0), 0
  for example in ds.take(limit + 1).as_numpy_iterator():
    if count == limit:
      return SplitSample(task.name, split, count, False, too_long, longest)
    count += 1
    for feature in features:
      length = len(example[feature])
      longest[feature] = max(longest[feature], length)
      too_long[feature] += length > feature_lengths[feature]
  return SplitSample(task.name, split, count, True, too_long, longest)


def report_truncation(sample: SplitSample, feature_lengths: Mapping[str, int]) -> None:
  for feature, count in sample.too_long.items():
    if count:
      logging.warning(
          "%s %s: %d of the first %d examples (%.1f%%) have %s longer than %d tokens (the "
          "longest %d); they are cut to fit. Raise TASK_FEATURE_LENGTHS['%s'] to keep them.",
          sample.task, sample.split, count, sample.examples, 100 * count / sample.examples,
          feature, feature_lengths[feature], sample.longest[feature], feature)


def check_tasks(task_names: Sequence[str], split: str, feature_lengths: Mapping[str, int],
                batch_size: Optional[int] = None) -> list[SplitSample]:
  """Checks each task's `split`; a training split (`batch_size` given) smaller than the
  batch is allowed (few-shot runs repeat their k examples) but said. A k-shot task is
  checked on its parent's split, which holds its examples (its own k are counted)."""
  samples, sampled = [], {}  # (k-shot tasks of one parent share its sample)
  for name in task_names:
    parent = few_shot.registered_parent(name)
    task = registry.get_task_or_mixture(parent or name)
    if task.name not in sampled:
      check_prepared(task, split)
      check_vocabularies(task)
      sampled[task.name] = sample_split(task, split, feature_lengths)
      report_truncation(sampled[task.name], feature_lengths)
    sample = sampled[task.name]
    if not sample.examples:
      raise DataError(f"Task {name!r} has no examples in its {split!r} split (0 read after "
                      "preprocessing); check the split's data and the task's filters.")
    size = (registry.get_task_or_mixture(name).source.num_input_examples(split) if parent
            else sample.examples if sample.complete else None)
    if batch_size and size is not None and size < batch_size:
      logging.warning("%s %s has %d examples, fewer than the batch of %d; they repeat "
                      "within each batch.", name, split, size, batch_size)
    samples.append(sample)
  return samples
