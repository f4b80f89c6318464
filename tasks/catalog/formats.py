"""Text-to-text formats: raw TFDS examples to `inputs` and `targets` strings.

A task's input is its template with each `{field}` replaced by the example's value (nested
TFDS features are named with "/", e.g. `{question/stem}`); the template is the documented
format, so documentation and behaviour cannot drift apart. Each function here takes the
template and returns a seqio preprocessor; the kinds differ in how they make targets and
which extra fields their metric needs (`group`, `answers`).

Two text styles, chosen by the gin binding `text_format.style`:
* 'attempt' (the paper's protocol, ATTEMPT's preprocessing, the default): inputs start with
  ATTEMPT's task name ("rte sentence1: ..."), classification targets are class ids as
  text ("0", "1", ...);
* 't5': inputs start with T5's task name, targets are the label words ("entailment").
The style is read when a dataset is built, not when the catalog registers its tasks, so a
binding parsed after the import applies.
"""

import dataclasses
import string
from typing import Callable, Mapping, Sequence

import gin
import seqio
import tensorflow as tf

STYLES = ("attempt", "t5")
Preprocessor = Callable[[tf.data.Dataset], tf.data.Dataset]
Format = Callable[[str], Preprocessor]



@tf.autograph.experimental.do_not_convert  # called while tf.data traces a preprocessor
@gin.configurable
def text_format(style: str = "attempt") -> str:
  """The catalog's text style: 'attempt' or 't5' (see the module docstring)."""
  if style not in STYLES:
    raise ValueError(f"text_format.style is {style!r}; choose one of {', '.join(STYLES)}.")
  return style


@dataclasses.dataclass(frozen=True)
class TaskPrefix:
  """The name an input starts with, in each style."""
  t5: str
  attempt: str

  def __call__(self) -> str:
    return self.attempt if text_format() == "attempt" else self.t5


def target_labels(labels: Sequence[str], numbered: bool = True) -> tuple[str, ...]:
  """A classification task's target strings in the current style: ATTEMPT writes class
  ids ("0", "1", ...) where T5 writes the label words. Tasks whose labels already are
  answer letters or numbers keep them (`numbered=False`)."""
  if numbered and text_format() == "attempt":
    return tuple(str(i) for i in range(len(labels)))
  return tuple(labels)


def prefixed(prefix: TaskPrefix) -> Preprocessor:
  """Puts the task name of the current style before each input."""
  def preprocess(ds: tf.data.Dataset) -> tf.data.Dataset:
    name = prefix()
    return ds.map(lambda ex: {**ex, "inputs": tf.strings.join([name, ex["inputs"]], " ")},
                  num_parallel_calls=tf.data.AUTOTUNE)
  return preprocess


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
    def preprocess(ds: tf.data.Dataset) -> tf.data.Dataset:
      text_format()  # an unknown style fails here, not inside tf.data's tracing
      return seqio.map_over_dataset(lambda ex: features(template, ex))(ds)
    return preprocess
  return make


def label(labels: Sequence[str], key: str = "label", numbered: bool = True) -> Format:
  """Classification: the target is the example's class id `key` as the style writes it."""
  return _per_example(lambda template, ex: {
      "inputs": _inputs(template, ex),
      "targets": _text_of(ex[key], target_labels(labels, numbered))})


def stsb_target(score: tf.Tensor) -> tf.Tensor:
  """A 0..5 similarity rounded to the nearest 0.2, as text: 3.47 -> "3.4"."""
  return tf.strings.as_string(tf.round(score * 5) / 5, precision=1)


def score(key: str = "label") -> Format:
  """Regression (STS-B): the target is the rounded score as text."""
  return _per_example(lambda template, ex: {"inputs": _inputs(template, ex),
                                            "targets": stsb_target(ex[key])})


def remove_markup(text: tf.Tensor) -> tf.Tensor:
  """MultiRC's paragraphs carry HTML line breaks and bold tags; ATTEMPT and T5 drop them."""
  return tf.strings.regex_replace(tf.strings.regex_replace(text, "<br>", " "), "</?b>", "")


def multirc(labels: Sequence[str]) -> Format:
  """One example per answer option, with `group` naming its question for the EM metric;
  the texts without markup."""
  def features(template, ex):
    texts = {key: remove_markup(ex[key]) for key in ("question", "answer", "paragraph")}
    return {"inputs": _inputs(template, ex, **texts),
            "targets": _text_of(ex["label"], target_labels(labels)),
            "group": _join_ids(ex["idx"]["paragraph"], ex["idx"]["question"])}
  return _per_example(features)


def _escaped(text: tf.Tensor) -> tf.Tensor:
  return tf.strings.regex_replace(text, r"([.^$*+?()\[\]{}|\\])", r"\\\1")


def mark_span(text: tf.Tensor, span: tf.Tensor, word_index: tf.Tensor, mark: str) -> tf.Tensor:
  """`mark` on both sides of `span` where it starts at word `word_index` ("The * city
  councilmen * refused"), as ATTEMPT and T5 mark WSC's spans; unchanged if it is not there."""
  pattern = tf.strings.join(["^((?:\\S+\\s){", tf.strings.as_string(word_index), "})(",
                             _escaped(span), ")"])
  return tf.strings.regex_replace(text, pattern, f"\\1{mark} \\2 {mark}")


def wsc(labels: Sequence[str]) -> Format:
  """WSC: the text with span 1 (the noun) marked by * and span 2 (the pronoun) by #."""
  def features(template, ex):
    text = mark_span(ex["text"], ex["span1_text"], ex["span1_index"], "*")
    # The two marks of span 1 are two more words before span 2 when it comes first.
    shift = 2 * tf.cast(ex["span1_index"] < ex["span2_index"], ex["span2_index"].dtype)
    text = mark_span(text, ex["span2_text"], ex["span2_index"] + shift, "#")
    return {"inputs": _inputs(template, ex, text=text),
            "targets": _text_of(ex["label"], target_labels(labels))}
  return _per_example(features)


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
