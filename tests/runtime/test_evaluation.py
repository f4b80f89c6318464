"""Evaluation: rank classification, greedy outputs, the average, the mesh-jitted functions,
and banks of prompts evaluated together."""

import gin
import jax
import numpy as np
import pytest

from mpt_jax.model import models
from mpt_jax.model.decoding import DecodingConfig
from mpt_jax.prompts import modules as prompts
from mpt_jax.runtime import evaluation
from mpt_jax.runtime import setup as setup_lib
from mpt_jax.runtime.configs import ModelConfig
from mpt_jax.runtime.partitioning import Partitioner
from tests import helpers
from tests import toy_tasks

VOCAB = toy_tasks.VOCAB
WORD_START = len("vowel: ")  # the first letter of the word, in every toy task's input


def _validation(task):
  return toy_tasks._examples(task, "validation")  # pylint: disable=protected-access


def _percent(flags):
  return 100 * float(np.mean(flags))


def _first_letters(batch):
  return [VOCAB.decode([int(t)]) for t in batch["encoder_input_tokens"][:, WORD_START]]


def _label(row) -> str:
  return VOCAB.decode([int(t) for t in row])


def _unused(batch):
  raise AssertionError(f"not expected to be called (batch of {len(batch['task_ids'])})")


class _Recorder:
  """Wraps a fake host function, keeping every batch it was given."""

  def __init__(self, fn):
    self.fn = fn
    self.batches = []

  def __call__(self, batch):
    self.batches.append(batch)
    return self.fn(batch)


def _always_no(batch):
  return np.array([1.0 if _label(row) == "no" else 0.0
                   for row in batch["decoder_target_tokens"]])


def _knows_vowels(batch):
  """Scores 0 for the correct label of each row's word, -1 for the other one."""
  right = ["yes" if c in "aeiou" else "no" for c in _first_letters(batch)]
  return np.array([0.0 if _label(row) == answer else -1.0
                   for row, answer in zip(batch["decoder_target_tokens"], right)])


def _evaluator(tasks, **kwargs):
  return evaluation.TaskEvaluator(tasks, "validation", helpers.TOY_LENGTHS, batch_size=5,
                                  **kwargs)


def _alone(fn):
  """A bank function (batches [1, B, ...]) from a function of one prompt's batch [B]."""
  return lambda batch: np.asarray(fn({k: v[0] for k, v in batch.items()}))[None]


def _evaluate(evaluator, predict, score):
  return evaluator.evaluate(_alone(predict), _alone(score))


def test_rank_classification_predicts_the_label_with_the_highest_score():
  evaluator = _evaluator({"toy_vowel": 1}, rank_classification=True)
  no_share = _percent([t == "no" for _, t in _validation("toy_vowel")])
  assert 0 < no_share < 100  # the two scorers below must disagree
  results = _evaluate(evaluator, _unused, _always_no)
  assert results == {"toy_vowel": {"accuracy": pytest.approx(no_share)}}
  assert _evaluate(evaluator, _unused, _knows_vowels) == {"toy_vowel": {"accuracy": 100.0}}


def test_rank_classification_scores_each_example_with_every_label_under_its_task_id():
  evaluator = _evaluator({"toy_vowel": 1}, rank_classification=True)
  score = _Recorder(_always_no)
  _evaluate(evaluator, _unused, score)
  examples = len(_validation("toy_vowel"))
  assert len(score.batches) == -(-examples // 5)  # 5 examples (10 rows) a call
  yes = list(VOCAB.encode("yes")) + [1]
  no = list(VOCAB.encode("no")) + [1, 0]
  for batch in score.batches:
    assert batch["decoder_target_tokens"].shape == (10, helpers.TOY_LENGTHS["targets"])
    np.testing.assert_array_equal(batch["decoder_target_tokens"], [yes, no] * 5)
    np.testing.assert_array_equal(batch["decoder_input_tokens"][:, 1:],
                                  batch["decoder_target_tokens"][:, :-1])
    assert (batch["decoder_input_tokens"][:, 0] == 0).all()
    np.testing.assert_array_equal(batch["decoder_loss_weights"],
                                  batch["decoder_target_tokens"] > 0)
    np.testing.assert_array_equal(batch["task_ids"], np.ones(10))
    # Both labels of an example are scored against the same input.
    np.testing.assert_array_equal(batch["encoder_input_tokens"][0::2],
                                  batch["encoder_input_tokens"][1::2])


def _first_letter_tokens(batch):
  rows = np.zeros_like(batch["decoder_target_tokens"])
  rows[:, 0] = batch["encoder_input_tokens"][:, WORD_START]
  rows[:, 1] = 1
  return rows


def _always_yes_tokens(batch):
  rows = np.zeros_like(batch["decoder_target_tokens"])
  rows[:, :4] = list(VOCAB.encode("yes")) + [1]
  return rows


def test_greedy_evaluation_scores_the_predict_functions_tokens():
  evaluator = _evaluator({"toy_first": 2, "toy_vowel": 0})
  predict = _Recorder(lambda b: (_first_letter_tokens(b) if b["task_ids"][0] == 2
                                 else _always_yes_tokens(b)))
  results = _evaluate(evaluator, predict, _unused)
  yes_share = _percent([t == "yes" for _, t in _validation("toy_vowel")])
  assert results == {"toy_first": {"accuracy": 100.0},
                     "toy_vowel": {"accuracy": pytest.approx(yes_share)}}
  # Every call is a full batch (the last one padded), fed under its task's id.
  for batch in predict.batches:
    assert batch["encoder_input_tokens"].shape == (5, helpers.TOY_LENGTHS["inputs"])
    assert len(set(batch["task_ids"].tolist())) == 1
  assert sorted({int(b["task_ids"][0]) for b in predict.batches}) == [0, 2]


def test_a_task_without_labels_is_decoded_even_under_rank_classification():
  evaluator = _evaluator({"toy_first": 0}, rank_classification=True)
  assert _evaluate(evaluator, _first_letter_tokens, _unused) == {
      "toy_first": {"accuracy": 100.0}}


def test_num_examples_caps_the_split():
  evaluator = _evaluator({"toy_vowel": 0}, num_examples=6)
  predict = _Recorder(_always_yes_tokens)
  _evaluate(evaluator, predict, _unused)
  assert len(predict.batches) == 2  # 6 examples in batches of 5


def test_the_average_score_is_the_mean_over_tasks_of_each_tasks_mean_metric():
  results = {"a": {"accuracy": 80.0, "f1": 60.0}, "b": {"accuracy": 20.0}, "c": {}}
  # (70 + 20) / 2; the mean over all three metrics would be 53.3.
  assert evaluation.average_score(results) == pytest.approx(45.0)
  assert evaluation.average_score({"a": {"accuracy": 12.5}}) == 12.5


def _bank_setup(backbone):
  module = prompts.PromptBank(3, 4, backbone.config.d_model,
                              initializer=jax.nn.initializers.normal(1.0))
  return setup_lib.build_setup(backbone, ["toy_vowel", "toy_first", "toy_upper"], module,
                               ModelConfig(), Partitioner())


def test_bank_eval_fns_give_each_prompt_its_own_scores_and_predictions(hf_t5_1_1, reference):
  setup = _bank_setup(hf_t5_1_1)
  predict, score = evaluation.bank_eval_fns(setup, max_decode_length=4)
  batch = helpers.toy_batch(reference)
  other = jax.tree.map(lambda x: x + 1.0, setup.initial_prompt)
  bank = [setup.initial_prompt, other]
  # Prompt 0 takes the batch's rows in order, prompt 1 the same rows reversed.
  rows = {k: np.stack([v, v[::-1]]) for k, v in batch.items()}
  scores, tokens = score(bank, rows), predict(bank, rows)
  assert scores.shape == (2, 3) and tokens.shape == (2, 3, 4)
  direct_score = jax.jit(setup.model.score_batch)
  direct_predict = jax.jit(lambda p, b: setup.model.predict_batch(p, b, 4))
  for r, trainable in enumerate((setup.initial_prompt, other)):
    params = models.merge(trainable, hf_t5_1_1.params)
    part = {k: v[r] for k, v in rows.items()}
    np.testing.assert_allclose(scores[r], direct_score(params, part), rtol=1e-5)
    np.testing.assert_array_equal(tokens[r], direct_predict(params, part))
  # The prompts differ, and so do their scores of the same rows.
  assert np.abs(scores[1][::-1] - scores[0]).max() > 1e-4


def test_evaluation_decodes_as_the_gin_bound_decoding_config_says(hf_t5_1_1, reference):
  setup = _bank_setup(hf_t5_1_1)
  batch = helpers.toy_batch(reference)
  params = models.merge(setup.initial_prompt, hf_t5_1_1.params)
  with gin.unlock_config():
    gin.bind_parameter("DecodingConfig.beam_size", 4)
    gin.bind_parameter("DecodingConfig.alpha", 0.0)
  try:
    predict, _ = evaluation.bank_eval_fns(setup, max_decode_length=6)
  finally:
    gin.clear_config()
  beam = jax.jit(lambda p, b: setup.model.predict_batch(
      p, b, 6, decoding_config=DecodingConfig(beam_size=4, alpha=0.0)))(params, batch)
  greedy = jax.jit(lambda p, b: setup.model.predict_batch(p, b, 6))(params, batch)
  tokens = predict([setup.initial_prompt], {k: v[None] for k, v in batch.items()})
  np.testing.assert_array_equal(tokens[0], beam)
  assert not np.array_equal(np.asarray(beam), np.asarray(greedy))  # the binding matters


def test_a_bank_is_evaluated_in_shared_calls_each_prompt_getting_its_own_results():
  shared = {}
  first = _evaluator({"toy_first": 2, "toy_vowel": 0}, data=shared)
  second = _evaluator({"toy_vowel": 1}, num_examples=6, data=shared)
  calls = []

  def predict(batch):  # prompt 0 knows first letters and says yes; prompt 1 always yes
    calls.append(batch["task_ids"].shape)
    return np.stack([_first_letter_tokens({k: v[0] for k, v in batch.items()})
                     if batch["task_ids"][0, 0] == 2 else
                     _always_yes_tokens({k: v[0] for k, v in batch.items()}),
                     _always_yes_tokens({k: v[1] for k, v in batch.items()})])

  results = evaluation.evaluate_bank([first, second], predict, _unused)
  yes_share = _percent([t == "yes" for _, t in _validation("toy_vowel")])
  yes_share_of_six = _percent([t == "yes" for _, t in _validation("toy_vowel")[:6]])
  assert results == [{"toy_first": {"accuracy": 100.0},
                      "toy_vowel": {"accuracy": pytest.approx(yes_share)}},
                     {"toy_vowel": {"accuracy": pytest.approx(yes_share_of_six)}}]
  # Prompt 0 has 16 + 16 examples in batches of 5 (8 calls), prompt 1 six (2): 8 calls of
  # [2 prompts, 5 rows], prompt 1's rows filler after its second.
  assert calls == [(2, 5)] * 8
  # toy_vowel's split with 6 examples and with all of them are two data sets; each is read
  # once for every evaluator that uses it.
  assert len(shared) == 3 and first.data["toy_vowel"] is not second.data["toy_vowel"]
  third = _evaluator({"toy_vowel": 4}, data=shared)
  assert third.data["toy_vowel"] is first.data["toy_vowel"]


def test_a_k_shot_tasks_dev_split_is_read_from_its_parent():
  from tasks import few_shot  # pylint: disable=g-import-not-at-top
  name = few_shot.register_few_shot("toy_first", k=4, seed=1)
  shared = {}
  variant = _evaluator({name: 0}, data=shared)
  parent = _evaluator({"toy_first": 0}, data=shared)
  assert variant.data[name] is parent.data["toy_first"]
  assert _evaluate(variant, _first_letter_tokens, _unused) == {name: {"accuracy": 100.0}}
