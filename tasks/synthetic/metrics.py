"""SeqIO metric functions for the suite: fn(targets, predictions) -> {name: value}.

Values are percentages (0..100), as in the paper's tables. QA answers are compared
after SQuAD's normalisation (lower case, no punctuation, no articles, single
spaces), so 'the garden' and 'garden' match.
"""

import collections
import re
import string
from typing import Sequence


def _check(targets: Sequence[str], predictions: Sequence[str]) -> None:
  if len(targets) != len(predictions):
    raise ValueError(f"Got {len(targets)} targets but {len(predictions)} predictions; "
                     "a metric needs one prediction per target.")
  if not targets:
    raise ValueError("A metric over zero examples is undefined; check the eval split.")


def accuracy(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Exact string match of label strings."""
  _check(targets, predictions)
  hits = sum(t == p for t, p in zip(targets, predictions))
  return {"accuracy": 100.0 * hits / len(targets)}


def normalize_answer(text: str) -> str:
  text = "".join(c for c in text.lower() if c not in string.punctuation)
  text = re.sub(r"\b(a|an|the)\b", " ", text)
  return " ".join(text.split())


def _f1(target: str, prediction: str) -> float:
  gold, guess = normalize_answer(target).split(), normalize_answer(prediction).split()
  if not gold or not guess:
    return float(gold == guess)
  common = sum((collections.Counter(gold) & collections.Counter(guess)).values())
  if not common:
    return 0.0
  precision, recall = common / len(guess), common / len(gold)
  return 2 * precision * recall / (precision + recall)


def squad(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Exact match and token F1 of one gold answer per example."""
  _check(targets, predictions)
  em = sum(normalize_answer(t) == normalize_answer(p) for t, p in zip(targets, predictions))
  f1 = sum(_f1(t, p) for t, p in zip(targets, predictions))
  return {"em": 100.0 * em / len(targets), "f1": 100.0 * f1 / len(targets)}
