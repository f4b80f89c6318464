"""The catalog's vocabulary: T5's model by default, overridable by a gin binding (which the
commands' --sentencepiece_model flag sets), resolved on first use; a SentencePiece model
trained here stands in for T5's."""

import gin
import pytest
import seqio
import sentencepiece as spm

import tasks.catalog
from tasks import vocab
from tests import helpers
from tests.mocked_catalog import as_text

BINDING = "default_vocabulary.sentencepiece_model_path"


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory):
  """A small model with T5's special ids (pad 0, eos 1, unk 2, no bos), trained on text like
  the mocked RTE examples, so it covers their characters."""
  corpus = [f"sentence1: glue/rte {split} {i} sentence1 sentence2: glue/rte {split} {i} "
            f"sentence2 {label} premise hypothesis"
            for split in ("train", "validation") for i in range(100)
            for label in ("entailment", "not_entailment")]
  return helpers.write_sentencepiece_model(tmp_path_factory.mktemp("spm"), corpus, 64)


@pytest.fixture
def clean_settings():
  yield
  gin.bind_parameter(BINDING, None)  # back to the default


def test_default_is_t5s_public_model_with_its_100_sentinels(clean_settings):
  vocabulary = vocab.default_vocabulary()  # lazy: nothing is read from gs://
  assert vocabulary.sentencepiece_model_file == (
      "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model")
  assert vocabulary.extra_ids == 100


def test_a_gin_binding_overrides_the_path(clean_settings):
  gin.bind_parameter(BINDING, "/from/gin.model")
  assert vocab.default_vocabulary().sentencepiece_model_file == "/from/gin.model"
  assert vocab.default_vocabulary("/explicit.model").sentencepiece_model_file == (
      "/explicit.model")


def test_registered_catalog_builds_its_vocabulary_only_when_used():
  vocabulary = seqio.get_mixture_or_task("mpt_glue_rte").output_features["inputs"].vocabulary
  assert isinstance(vocabulary, vocab.DeferredVocabulary)
  assert "not built yet" in str(vocabulary)


def test_deferred_vocabulary_sees_settings_made_after_it_was_created(clean_settings,
                                                                     sentencepiece_model):
  vocabulary = vocab.DeferredVocabulary()
  gin.bind_parameter(BINDING, sentencepiece_model)  # as a gin file parsed after the import
  pieces = spm.SentencePieceProcessor(model_file=sentencepiece_model).get_piece_size()
  assert vocabulary.vocab_size == pieces + vocab.DEFAULT_EXTRA_IDS
  assert (vocabulary.pad_id, vocabulary.eos_id, vocabulary.unk_id) == (0, 1, 2)
  tokens = vocabulary.encode("premise 12 hypothesis")
  assert vocabulary.decode(tokens) == "premise 12 hypothesis"
  assert vocabulary.decode_tf(vocabulary.encode_tf("train 7")).numpy().decode() == "train 7"


@pytest.mark.usefixtures("mock_catalog_tfds")
def test_a_catalog_task_end_to_end_with_sentencepiece(clean_settings, sentencepiece_model):
  gin.bind_parameter(BINDING, sentencepiece_model)
  tasks.catalog.register_all(vocab.DeferredVocabulary(), name_suffix="_spm")
  task = seqio.get_mixture_or_task("mpt_glue_rte_spm")
  vocabulary = task.output_features["inputs"].vocabulary
  examples = list(task.get_dataset(None, split="validation", shuffle=False).as_numpy_iterator())
  assert examples
  for ex in examples:
    for feature in ("inputs", "targets"):
      tokens = list(ex[feature])
      assert tokens[-1] == 1
      assert vocabulary.decode(tokens[:-1]) == as_text(ex[f"{feature}_pretokenized"])
