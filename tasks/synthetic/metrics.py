"""SeqIO metric functions for the suite: the catalog's, over one gold string each."""

from typing import Sequence

from tasks import metrics

accuracy = metrics.accuracy
normalize_answer = metrics.normalize_answer


def squad(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """SQuAD exact match and token F1 against each example's single gold answer."""
  return metrics.squad([[target] for target in targets], predictions)
