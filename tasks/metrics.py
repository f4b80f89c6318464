"""Evaluation metrics as seqio metric functions: `fn(targets, predictions) -> {name: score}`.

Scores are percentages (0..100), as t5.evaluation.metrics reports them and the paper's
tables print them. Classification metrics take label ids (the postprocessors map a label
string to its index and anything else to -1, which is always wrong); the regression metrics
take floats; the QA metrics take strings; MultiRC and ReCoRD take the dicts their
postprocessors build (see tasks/catalog/postprocessors.py).
"""

import collections
import re
import string
from typing import Any, Callable, Mapping, Sequence

import numpy as np

Scores = dict[str, float]


def _paired(targets: Sequence[Any], predictions: Sequence[Any]) -> None:
  if len(targets) != len(predictions):
    raise ValueError(f"Got {len(targets)} targets but {len(predictions)} predictions; "
                     "a metric needs one prediction per target.")
  if not targets:
    raise ValueError("A metric needs at least one (target, prediction) pair; got none.")


def accuracy(targets, predictions) -> Scores:
  _paired(targets, predictions)
  return {"accuracy": 100 * float(np.mean(np.asarray(targets) == np.asarray(predictions)))}


def _confusion(targets, predictions) -> np.ndarray:
  """Counts [true class, predicted class] over the union of the labels seen."""
  classes, ids = np.unique(np.concatenate([targets, predictions]), return_inverse=True)
  true_ids, pred_ids = ids[:len(targets)], ids[len(targets):]
  counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
  np.add.at(counts, (true_ids, pred_ids), 1)
  return counts


def matthews_corr(targets, predictions) -> Scores:
  """Matthews correlation (Gorodkin's multiclass form, so a -1 prediction is one more class).

  Undefined when targets or predictions are constant; scored 0 then, as scikit-learn does.
  """
  _paired(targets, predictions)
  counts = _confusion(np.asarray(targets), np.asarray(predictions)).astype(np.float64)
  total, correct = counts.sum(), np.trace(counts)
  true_per_class, pred_per_class = counts.sum(axis=1), counts.sum(axis=0)
  numerator = correct * total - true_per_class @ pred_per_class
  denominator = np.sqrt((total**2 - pred_per_class @ pred_per_class)
                        * (total**2 - true_per_class @ true_per_class))
  return {"matthews_corr": 100 * float(numerator / denominator) if denominator else 0.0}


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
  x, y = x - x.mean(), y - y.mean()
  norm = np.sqrt((x @ x) * (y @ y))
  return float(x @ y / norm) if norm else 0.0


def _average_ranks(x: np.ndarray) -> np.ndarray:
  """Ranks 1..n, ties sharing the mean of the ranks they span."""
  order = np.argsort(x, kind="stable")
  ordered = x[order]
  starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
  lengths = np.diff(np.r_[starts, len(x)])
  mean_rank = starts + (lengths + 1) / 2
  ranks = np.empty(len(x))
  ranks[order] = np.repeat(mean_rank, lengths)
  return ranks


def pearson_and_spearman(targets, predictions) -> Scores:
  """Pearson and Spearman correlations (STS-B). Constant inputs score 0, not NaN, so model
  selection on dev stays well defined early in training."""
  _paired(targets, predictions)
  x, y = np.asarray(targets, np.float64), np.asarray(predictions, np.float64)
  return {"pearson_corr": 100 * _pearson(x, y),
          "spearman_corr": 100 * _pearson(_average_ranks(x), _average_ranks(y))}


def _f1(true_positives: int, false_positives: int, false_negatives: int) -> float:
  denominator = 2 * true_positives + false_positives + false_negatives
  return 2 * true_positives / denominator if denominator else 0.0


def _binary_f1(targets: np.ndarray, predictions: np.ndarray) -> float:
  """F1 of class 1, an invalid prediction (neither 0 nor 1) counted as wrong: a false
  negative on a positive, a false positive on a negative (T5's f1_score_with_invalid)."""
  valid = (predictions == 0) | (predictions == 1)
  predicted = np.where(valid, predictions, 1 - targets) == 1
  positive = targets == 1
  return _f1(int(np.sum(positive & predicted)), int(np.sum(~positive & predicted)),
             int(np.sum(positive & ~predicted)))


def f1_and_accuracy(targets, predictions) -> Scores:
  """Binary F1 of label 1 (MRPC "equivalent", QQP "duplicate") and accuracy."""
  _paired(targets, predictions)
  t, p = np.asarray(targets), np.asarray(predictions)
  return {"f1": 100 * _binary_f1(t, p), **accuracy(targets, predictions)}


def macro_f1_and_accuracy(num_classes: int) -> Callable[..., Scores]:
  """Unweighted mean of the per-class F1 over classes 0..num_classes-1 (CB), and accuracy."""

  def macro_f1_and_accuracy_fn(targets, predictions) -> Scores:
    _paired(targets, predictions)
    t, p = np.asarray(targets), np.asarray(predictions)
    per_class = [_f1(int(np.sum((t == c) & (p == c))), int(np.sum((t != c) & (p == c))),
                     int(np.sum((t == c) & (p != c)))) for c in range(num_classes)]
    return {"macro_f1": 100 * float(np.mean(per_class)), **accuracy(targets, predictions)}

  return macro_f1_and_accuracy_fn


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
  """The official SQuAD normalisation: lowercase, drop punctuation and the articles
  a/an/the, collapse whitespace."""
  text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
  return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(gold: str, prediction: str) -> float:
  gold_tokens = normalize_answer(gold).split()
  predicted_tokens = normalize_answer(prediction).split()
  common = sum((collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)).values())
  if not common:
    return 0.0
  precision, recall = common / len(predicted_tokens), common / len(gold_tokens)
  return 2 * precision * recall / (precision + recall)


def _best_match(answers: Sequence[str], prediction: str) -> tuple[float, float]:
  """(exact match, F1) against the best of the gold answers, as the official scripts do."""
  if not answers:
    raise ValueError(f"No gold answer to compare the prediction {prediction!r} with.")
  exact = max(float(normalize_answer(a) == normalize_answer(prediction)) for a in answers)
  return exact, max(_token_f1(a, prediction) for a in answers)


def squad(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> Scores:
  """SQuAD / MRQA exact match and token F1, each the max over an example's gold answers."""
  _paired(targets, predictions)
  scores = np.array([_best_match(answers, p) for answers, p in zip(targets, predictions)])
  return {"em": 100 * float(scores[:, 0].mean()), "f1": 100 * float(scores[:, 1].mean())}


def _first_per_group(items: Sequence[Mapping[str, Any]]) -> dict[Any, Mapping[str, Any]]:
  grouped = {}
  for item in items:
    grouped.setdefault(item["group"], item)
  return grouped


def multirc(targets: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]]
            ) -> Scores:
  """MultiRC's official pair: F1a, the binary F1 over every answer option (an invalid
  prediction counted as wrong), and EM, the share of questions (groups) whose options
  are all labelled correctly.

  Items are {"group": question id, "label": 0, 1 or -1 (invalid)}.
  """
  _paired(targets, predictions)
  for t, p in zip(targets, predictions):
    if t["group"] != p["group"]:
      raise ValueError(f"Target group {t['group']!r} is paired with prediction group "
                       f"{p['group']!r}; targets and predictions must be in the same order.")
  gold = np.array([t["label"] for t in targets])
  predicted = np.array([p["label"] for p in predictions])
  correct_by_group = collections.defaultdict(list)
  for t, ok in zip(targets, gold == predicted):
    correct_by_group[t["group"]].append(ok)
  exact = np.mean([all(oks) for oks in correct_by_group.values()])
  return {"f1a": 100 * _binary_f1(gold, predicted), "em": 100 * float(exact)}


def record(targets: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]]
           ) -> Scores:
  """ReCoRD's official metric: per query, EM and F1 against the best gold answer, averaged
  over queries.

  Training duplicates a query once per gold answer; evaluation sees the same duplicates,
  so items carry their query id ("group") and each query counts once, scored with the
  prediction of its first copy. Targets are {"group", "answers"}, predictions
  {"group", "answer"}.
  """
  _paired(targets, predictions)
  gold, predicted = _first_per_group(targets), _first_per_group(predictions)
  if gold.keys() != predicted.keys():
    raise ValueError("ReCoRD targets and predictions cover different queries: "
                     f"{sorted(gold.keys() ^ predicted.keys())[:5]}...")
  scores = np.array([_best_match(gold[g]["answers"], predicted[g]["answer"]) for g in gold])
  return {"em": 100 * float(scores[:, 0].mean()), "f1": 100 * float(scores[:, 1].mean())}
