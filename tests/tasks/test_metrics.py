"""Each metric against an independent computation: scikit-learn and scipy, or worked examples."""

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from tasks import metrics

RNG = np.random.RandomState(0)
# Label ids as the postprocessors produce them: -1 is a prediction that named no label.
BINARY_TARGETS = RNG.randint(0, 2, size=200)
BINARY_PREDICTIONS = np.where(RNG.rand(200) < 0.1, -1, RNG.randint(0, 2, size=200))
CLASS3_TARGETS = RNG.randint(0, 3, size=200)
CLASS3_PREDICTIONS = np.where(RNG.rand(200) < 0.1, -1, RNG.randint(0, 3, size=200))


def test_accuracy_matches_sklearn():
  got = metrics.accuracy(list(CLASS3_TARGETS), list(CLASS3_PREDICTIONS))
  assert got == {"accuracy": pytest.approx(100 * skm.accuracy_score(CLASS3_TARGETS,
                                                                     CLASS3_PREDICTIONS))}


def test_accuracy_compares_strings():
  assert metrics.accuracy(["a", "b", "c", "d"], ["a", "x", "c", "d"]) == {"accuracy": 75.0}


@pytest.mark.parametrize("targets,predictions", [
    (BINARY_TARGETS, BINARY_PREDICTIONS),
    (CLASS3_TARGETS, CLASS3_PREDICTIONS),
    (BINARY_TARGETS, BINARY_TARGETS),
    (BINARY_TARGETS, 1 - BINARY_TARGETS),
])
def test_matthews_corr_matches_sklearn(targets, predictions):
  got = metrics.matthews_corr(list(targets), list(predictions))["matthews_corr"]
  assert got == pytest.approx(100 * skm.matthews_corrcoef(targets, predictions))


def test_matthews_corr_of_a_constant_prediction_is_zero_like_sklearn():
  constant = np.ones_like(BINARY_TARGETS)
  assert skm.matthews_corrcoef(BINARY_TARGETS, constant) == 0.0
  assert metrics.matthews_corr(list(BINARY_TARGETS), list(constant)) == {"matthews_corr": 0.0}


def test_pearson_and_spearman_match_scipy():
  targets = np.round(RNG.rand(100) * 5 * 5) / 5  # STS-B-like, with many ties
  predictions = np.round(np.clip(targets + RNG.randn(100), 0, 5) * 5) / 5
  got = metrics.pearson_and_spearman(list(targets), list(predictions))
  assert got["pearson_corr"] == pytest.approx(100 * stats.pearsonr(targets, predictions)[0])
  assert got["spearman_corr"] == pytest.approx(100 * stats.spearmanr(targets, predictions)[0])


def test_correlations_of_a_constant_prediction_are_zero():
  got = metrics.pearson_and_spearman([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
  assert got == {"pearson_corr": 0.0, "spearman_corr": 0.0}


def test_f1_and_accuracy_match_sklearn():
  got = metrics.f1_and_accuracy(list(BINARY_TARGETS), list(BINARY_PREDICTIONS))
  # An invalid prediction (-1) is wrong whatever the target, as T5's
  # f1_score_with_invalid has it: for scikit-learn it becomes the other class.
  as_binary = np.where(BINARY_PREDICTIONS < 0, 1 - BINARY_TARGETS, BINARY_PREDICTIONS)
  assert got["f1"] == pytest.approx(100 * skm.f1_score(BINARY_TARGETS, as_binary))
  assert got["accuracy"] == pytest.approx(
      100 * skm.accuracy_score(BINARY_TARGETS, BINARY_PREDICTIONS))


def test_binary_f1_counts_an_invalid_prediction_as_wrong_worked_by_hand():
  # Targets 1 1 0 0, predictions 1 -1 -1 0. T5 turns each invalid prediction into the
  # other class: 1 0 1 0, so TP 1, FN 1, FP 1 and F1 = 2 / (2 + 1 + 1) = 50. Read as a
  # negative, the invalid prediction on the negative would instead be right (F1 66.7).
  got = metrics.f1_and_accuracy([1, 1, 0, 0], [1, -1, -1, 0])
  assert got == {"f1": pytest.approx(50.0), "accuracy": pytest.approx(50.0)}


def test_binary_f1_of_all_invalid_predictions_is_zero():
  assert metrics.f1_and_accuracy([1, 0, 0], [-1, -1, -1])["f1"] == 0.0


def test_macro_f1_matches_sklearn():
  got = metrics.macro_f1_and_accuracy(3)(list(CLASS3_TARGETS), list(CLASS3_PREDICTIONS))
  assert got["macro_f1"] == pytest.approx(100 * skm.f1_score(
      CLASS3_TARGETS, CLASS3_PREDICTIONS, labels=[0, 1, 2], average="macro"))
  assert got["accuracy"] == pytest.approx(
      100 * skm.accuracy_score(CLASS3_TARGETS, CLASS3_PREDICTIONS))


def test_macro_f1_counts_a_class_never_seen_as_zero():
  # Class 2 is neither a target nor a prediction: its F1 is 0, so the mean is (1 + 1 + 0) / 3.
  got = metrics.macro_f1_and_accuracy(3)([0, 1], [0, 1])
  assert got["macro_f1"] == pytest.approx(200 / 3)


@pytest.mark.parametrize("text,normalized", [
    ("The Eiffel Tower!", "eiffel tower"),
    ("  an apple,   a pear and the plum. ", "apple pear and plum"),
    ("Theater (1990)", "theater 1990"),  # "the" inside a word stays
    ("A", ""),
    ("U.S.-based", "usbased"),
])
def test_squad_normalization(text, normalized):
  assert metrics.normalize_answer(text) == normalized


def test_squad_worked_example():
  targets = [["The Eiffel Tower", "Eiffel tower in Paris"], ["1990"], ["red car"]]
  predictions = ["eiffel tower.", "in 1990 or 1991", "blue car"]
  # 1: exact match with the first answer (F1 1).
  # 2: tokens {in, 1990, or, 1991} vs {1990}: precision 1/4, recall 1, F1 0.4, EM 0.
  # 3: {blue, car} vs {red, car}: precision 1/2, recall 1/2, F1 0.5, EM 0.
  got = metrics.squad(targets, predictions)
  assert got["em"] == pytest.approx(100 / 3)
  assert got["f1"] == pytest.approx(100 * (1 + 0.4 + 0.5) / 3)


def test_squad_takes_the_best_answer_for_f1_and_em_separately():
  # F1 prefers "big red car" (2/3 overlap -> F1 0.8); EM needs the exact "red car".
  got = metrics.squad([["big red car", "a red car"]], ["red car"])
  assert got == {"em": 100.0, "f1": 100.0}
  got = metrics.squad([["big red car", "red boat"]], ["red car"])
  assert got["em"] == 0.0
  assert got["f1"] == pytest.approx(80.0)


def test_multirc_worked_example():
  targets = [{"group": "q1", "label": 1}, {"group": "q1", "label": 0},
             {"group": "q2", "label": 1}, {"group": "q2", "label": 1},
             {"group": "q3", "label": 0}, {"group": "q3", "label": 0}]
  predictions = [{"group": "q1", "label": 1}, {"group": "q1", "label": 0},
                 {"group": "q2", "label": 1}, {"group": "q2", "label": -1},
                 {"group": "q3", "label": 1}, {"group": "q3", "label": -1}]
  # Over all 6 options: TP 2; FN 1 (q2's invalid answer on a positive); FP 2 (q3's 1,
  # and q3's invalid answer on a negative, wrong as T5 counts it): F1a = 4 / 7.
  # Questions all right: q1 only, so EM = 1/3.
  got = metrics.multirc(targets, predictions)
  assert got["f1a"] == pytest.approx(100 * 4 / 7)
  assert got["em"] == pytest.approx(100 / 3)


def test_multirc_refuses_misaligned_groups():
  with pytest.raises(ValueError, match="same order"):
    metrics.multirc([{"group": "a", "label": 1}], [{"group": "b", "label": 1}])


def test_record_worked_example():
  # Query p0-q0 has two gold answers, so it appears twice (one training copy per answer);
  # it counts once, with its first copy's prediction.
  targets = [{"group": "p0-q0", "answers": ["Barack Obama", "Obama"]},
             {"group": "p0-q0", "answers": ["Barack Obama", "Obama"]},
             {"group": "p1-q1", "answers": ["New York City"]}]
  predictions = [{"group": "p0-q0", "answer": "obama"},
                 {"group": "p0-q0", "answer": "obama"},
                 {"group": "p1-q1", "answer": "New York"}]
  # p0-q0: EM with "Obama" -> EM 1, F1 1.
  # p1-q1: {new, york} vs {new, york, city}: precision 1, recall 2/3, F1 0.8, EM 0.
  got = metrics.record(targets, predictions)
  assert got["em"] == pytest.approx(50.0)
  assert got["f1"] == pytest.approx(90.0)


def test_record_refuses_different_queries():
  with pytest.raises(ValueError, match="different queries"):
    metrics.record([{"group": "a", "answers": ["x"]}], [{"group": "b", "answer": "x"}])


def test_metrics_refuse_mismatched_lengths_and_empty_input():
  with pytest.raises(ValueError, match="2 targets but 1 predictions"):
    metrics.accuracy([1, 0], [1])
  with pytest.raises(ValueError, match="at least one"):
    metrics.squad([], [])
