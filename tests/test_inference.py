"""`mpt_jax.predict` and `Predictor`: the strings are the model's own decodes of the
encoded texts, whatever the batching; bad tasks, vocabularies and shapes are refused
with the fix."""

import jax
import numpy as np
import pytest
import seqio

import mpt_jax
from mpt_jax import inference
from mpt_jax.model import models
from mpt_jax.model.decoding import DecodingConfig
from mpt_jax.prompts import factories
from tests.helpers import FIXTURES

TEXTS = ["rte sentence1: A cat sat. sentence2: A cat sits.", "cola sentence: Cats sat.",
         "mrpc sentence1: Dogs run. sentence2: A dog ran.", "rte sentence1: x sentence2: y",
         "cola sentence: The the."]
TASKS = ["rte", "cola", "mrpc", "rte", "cola"]
BYTES = seqio.ByteVocabulary()


@pytest.fixture(name="backbone", scope="module")
def backbone_fixture():
  return mpt_jax.load_backbone(FIXTURES / "hf_t5_1_1")


@pytest.fixture(name="named", scope="module")
def named_prompts():
  return mpt_jax.load_prompts(FIXTURES / "peft_mpt_r1", task_names=["rte", "mrpc", "cola"])


def test_predictions_are_the_models_decodes_of_the_encoded_texts(backbone, named):
  predictor = mpt_jax.Predictor(backbone, named, max_decode_length=8, batch_size=8,
                                decoding_config=DecodingConfig(beam_size=3))
  predictions = predictor.predict(TEXTS, TASKS, vocabulary=BYTES)
  tokens = inference.encode(TEXTS, BYTES)
  assert tokens.shape == (5, 64)  # the longest text (48 bytes + EOS), to a power of two
  assert [t[np.flatnonzero(t)[-1]] for t in tokens] == [1] * 5  # each ends with EOS
  np.testing.assert_array_equal(tokens[0, :48], np.frombuffer(TEXTS[0].encode(), np.uint8) + 3)
  prompt = factories.module_for(named)
  direct = models.PromptTuningModel(backbone.config.replace(dropout_rate=0.0), prompt)
  params = {**backbone.params, "prompt": prompt.init(jax.random.PRNGKey(0),
                                                     np.zeros((1,), np.int32))["params"]}
  ids = np.array([named.task_index(t) for t in TASKS], np.int32)
  expected, aux = direct.predict_batch_with_aux(
      params, {"encoder_input_tokens": tokens, "task_ids": ids}, 8,
      decoding_config=DecodingConfig(beam_size=3))
  for prediction, row, score in zip(predictions, np.asarray(expected), aux["scores"]):
    ids_ = inference.up_to_eos(row, 1)
    assert prediction.tokens == tuple(ids_)
    assert prediction.text == BYTES.decode([i for i in ids_ if i != 1])
    assert prediction.score == pytest.approx(float(score), abs=1e-4)


def test_the_batch_size_does_not_change_the_predictions(backbone, named):
  big = mpt_jax.predict(backbone, named, TEXTS, TASKS, vocabulary=BYTES, max_decode_length=6,
                        batch_size=8)
  small = mpt_jax.Predictor(backbone, named, max_decode_length=6, batch_size=2)
  in_twos = [p.text for p in small.predict(TEXTS, TASKS, vocabulary=BYTES)]
  alone = [small.predict([text], task, vocabulary=BYTES, input_length=64)[0].text
           for text, task in zip(TEXTS, TASKS)]
  assert big == in_twos == alone and len(big) == 5


def test_sampling_is_reproducible_from_its_seed_and_batch(backbone, named):
  sampler = lambda seed: mpt_jax.Predictor(
      backbone, named, max_decode_length=8, batch_size=8,
      decoding_config=DecodingConfig(temperature=1.0, seed=seed))
  tokens, ids = inference.encode(TEXTS, BYTES), np.array([0, 2, 1, 0, 2], np.int32)
  first = sampler(0)
  draw = lambda predictor, number: predictor.predict_tokens(tokens, ids, number)[0]
  np.testing.assert_array_equal(draw(first, 0), draw(first, 0))
  assert not np.array_equal(draw(first, 0), draw(first, 1))  # each batch draws anew
  assert not np.array_equal(draw(first, 0), draw(sampler(1), 0))


@pytest.mark.parametrize("kwargs, message", [
    (dict(tasks=["rte", "qnli", "cola", "rte", "cola"]),
     r"Unknown task 'qnli'; this prompt file has \['rte', 'mrpc', 'cola'\]"),
    (dict(tasks=["rte", "cola"]), r"2 task names for 5 inputs"),
    (dict(tasks=None), r"These prompts hold 3 tasks \['rte', 'mrpc', 'cola'\]: name the task"),
    (dict(tasks=TASKS, vocabulary=None),
     r"Tasks \['cola', 'mrpc', 'rte'\] have no one registered SeqIO vocabulary: pass "
     r"vocabulary="),
    (dict(tasks=TASKS, vocabulary=seqio.ByteVocabulary(extra_ids=0)) | dict(
        texts=["rte sentence1: \u00e9t\u00e9"]), r"outside the backbone's vocabulary"),
])
def test_bad_tasks_and_vocabularies_are_refused_with_the_fix(backbone, named, kwargs, message):
  arguments = {"texts": TEXTS, "vocabulary": BYTES, **kwargs}
  if len(arguments["texts"]) == 1:
    arguments["tasks"] = "rte"
  with pytest.raises(ValueError, match=message):
    mpt_jax.predict(backbone, named, arguments.pop("texts"), arguments.pop("tasks"),
                    max_decode_length=4, **arguments)
