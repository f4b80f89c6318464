"""Postprocessors: decoded text (a target or a model's prediction) to what a metric takes.

seqio calls `fn(text, example=..., is_target=...)` with the preprocessed example as numpy
values, so the grouped and multi-answer metrics read `group` and `answers` from it.
"""

from typing import Any, Callable, Mapping, Optional, Sequence

from tasks.catalog import formats

Postprocessor = Callable[..., Any]


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _need_example(example: Optional[Mapping[str, Any]], key: str) -> Mapping[str, Any]:
  if example is None or key not in example:
    raise ValueError(f"This postprocessor reads {key!r} from the preprocessed example; call it "
                     "as seqio does, fn(text, example=example, is_target=...).")
  return example


def label_id(labels: Sequence[str], numbered: bool = True) -> Postprocessor:
  """A target string of the current text style to its class id; anything else (an invalid
  prediction) to -1."""

  def label_id_fn(text, example=None, is_target=False) -> int:
    del example, is_target
    targets = formats.target_labels(labels, numbered)
    text = _text(text).strip()
    return targets.index(text) if text in targets else -1

  return label_id_fn


def to_float(text, example=None, is_target=False) -> float:
  """STS-B's score text back to a number; text that is not a number scores -1, below the
  0..5 range, rather than failing the whole evaluation."""
  del example, is_target
  try:
    return float(_text(text))
  except ValueError:
    return -1.0


def strip(text, example=None, is_target=False) -> str:
  del example, is_target
  return _text(text).strip()


def answers(text, example=None, is_target=False):
  """Targets become every gold answer of the example (for max-over-answers metrics);
  predictions stay text."""
  if not is_target:
    return _text(text)
  return [_text(a) for a in _need_example(example, "answers")["answers"]]


def grouped_label(labels: Sequence[str]) -> Postprocessor:
  """MultiRC: {"group": question id, "label": class id or -1}."""
  to_id = label_id(labels)

  def grouped_label_fn(text, example=None, is_target=False) -> dict[str, Any]:
    group = _text(_need_example(example, "group")["group"])
    return {"group": group, "label": to_id(text)}

  return grouped_label_fn


def record_answer(text, example=None, is_target=False) -> dict[str, Any]:
  """ReCoRD: targets {"group": query id, "answers": [...]}, predictions {"group", "answer"}."""
  group = _text(_need_example(example, "group")["group"])
  if is_target:
    return {"group": group, "answers": answers(text, example, is_target=True)}
  return {"group": group, "answer": _text(text)}
