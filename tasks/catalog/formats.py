"""Text-to-text formats: raw TFDS examples to `inputs` and `targets` strings.

A task's input is its template with each `{field}` replaced by the example's value (nested
TFDS features are named with "/", e.g. `{question/stem}`); the template is the documented
format, so documentation and behaviour cannot drift apart. Each function here takes the
template and returns a seqio preprocessor; the kinds differ in how they make targets and
which extra fields their metric needs (`group`, `answers`).
"""

import string
from typing import Callable, Mapping, Sequence

import seqio
import tensorflow as tf

Preprocessor = Callable[[tf.data.Dataset], tf.data.Dataset]
Format = Callable[[str], Preprocessor]


def fill(template: str, values: Mapping[str, tf.Tensor]) -> tf.Tensor:
  """The template with its `{field}` slots replaced by string tensors from `values`."""
  pieces = []
  for literal, field, _, _ in string.Formatter().parse(template):
    if literal:
      pieces.append(literal)
    if field is not None:
      if field not in values:
        raise KeyError(f"Template {template!r} names {{{field}}}, which the example lacks; "
                       f"it has {', '.join(sorted(values))}.")
      pieces.append(values[field])
  return tf.strings.join(pieces)


def _flat(example: Mapping[str, object], prefix: str = "") -> dict[str, tf.Tensor]:
  flat = {}
  for key, value in example.items():
    if isinstance(value, Mapping):
      flat.update(_flat(value, f"{prefix}{key}/"))
    else:
      flat[prefix + key] = value
  return flat


def _inputs(template: str, example, **derived) -> tf.Tensor:
  return fill(template, {**_flat(example), **derived})


def _text_of(ids: tf.Tensor, labels: Sequence[str]) -> tf.Tensor:
  return tf.gather(tf.constant(list(labels)), ids)


def _join_ids(*ids: tf.Tensor) -> tf.Tensor:
  return tf.strings.reduce_join([tf.strings.as_string(i) for i in ids], separator="-")


def _per_example(features: Callable[[str, dict], dict]) -> Format:
  """A format whose preprocessor maps each example to `features(template, example)`."""
  def make(template: str) -> Preprocessor:
    return seqio.map_over_dataset(lambda ex: features(template, ex))
  return make


def label(labels: Sequence[str], key: str = "label") -> Format:
  """Classification: the target is the name of the example's class id `key`."""
  return _per_example(lambda template, ex: {"inputs": _inputs(template, ex),
                                            "targets": _text_of(ex[key], labels)})


def stsb_target(score: tf.Tensor) -> tf.Tensor:
  """A 0..5 similarity rounded to the nearest 0.2, as text: 3.47 -> "3.4"."""
  return tf.strings.as_string(tf.round(score * 5) / 5, precision=1)


def score(key: str = "label") -> Format:
  """Regression (STS-B): the target is the rounded score as text."""
  return _per_example(lambda template, ex: {"inputs": _inputs(template, ex),
                                            "targets": stsb_target(ex[key])})


def multirc(labels: Sequence[str]) -> Format:
  """One example per answer option, with `group` naming its question for the EM metric."""
  return _per_example(lambda template, ex: {
      "inputs": _inputs(template, ex), "targets": _text_of(ex["label"], labels),
      "group": _join_ids(ex["idx"]["paragraph"], ex["idx"]["question"])})


def record_passage(passage: tf.Tensor) -> tf.Tensor:
  """ReCoRD passages end with "@highlight" bullet lines; make them sentences."""
  passage = tf.strings.regex_replace(passage, r"([.?!\"'])\n@highlight\n", r"\1 ")
  return tf.strings.regex_replace(passage, r"\n@highlight\n", ". ")


def record() -> Format:
  """ReCoRD: one example per gold answer (queries without one are dropped), each keeping
  all the answers and its query id (`group`) for the max-over-answers metric."""
  def make(template: str) -> Preprocessor:
    def preprocess(ds):
      def per_answer(ex):
        inputs = _inputs(template, ex, passage=record_passage(ex["passage"]),
                         entities=tf.strings.reduce_join(ex["entities"], separator=", "))
        group = _join_ids(ex["idx"]["passage"], ex["idx"]["query"])
        answers = ex["answers"]
        return tf.data.Dataset.from_tensor_slices(answers).map(
            lambda answer: {"inputs": inputs, "targets": answer, "answers": answers,
                            "group": group})
      return ds.flat_map(per_answer)
    return preprocess
  return make


def extractive_qa(answers_key: str) -> Format:
  """SQuAD/MRQA: the target is the first gold answer; `answers` keeps them all."""
  def features(template, ex):
    answers = _flat(ex)[answers_key]
    return {"inputs": _inputs(template, ex), "targets": answers[0], "answers": answers}
  return _per_example(features)


def lettered_choices(letters: Sequence[str]) -> Format:
  """ARC: a variable number of choices, written "A: … B: …"; the target is a letter."""
  def features(template, ex):
    choices = tf.strings.reduce_join(
        _text_of(ex["choices"]["label"], letters) + ": " + ex["choices"]["text"],
        separator=" ")
    return {"inputs": _inputs(template, ex, choices=choices),
            "targets": _text_of(ex["answerKey"], letters)}
  return _per_example(features)


def text_target(key: str) -> Format:
  """The target is a text field as is (UnifiedQA's CommonsenseQA answers)."""
  return _per_example(lambda template, ex: {"inputs": _inputs(template, ex),
                                            "targets": ex[key]})
