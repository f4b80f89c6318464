"""The vocabulary catalog tasks tokenize with: T5's SentencePiece model unless told otherwise.

The model path is chosen, first match wins, from
1. the gin binding `default_vocabulary.sentencepiece_model_path` (or an explicit argument),
2. the environment variable MPT_SENTENCEPIECE_MODEL (the training CLI maps its
   `--sentencepiece_model` flag onto it), e.g. a local copy on a machine without gs:// access,
3. T5's public model, gs://t5-data/vocabs/cc_all.32000/sentencepiece.model.

Catalog tasks hold a `DeferredVocabulary`, which makes that choice on first use rather than
at import: t5x-style gin files import the task module before their bindings are applied, so
a vocabulary built at import time would never see the binding.
"""

import os
from typing import Callable, Optional

import gin
import seqio

DEFAULT_SENTENCEPIECE_MODEL = "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"
DEFAULT_EXTRA_IDS = 100  # T5's sentinels: 32,000 pieces + 100 extra ids
ENV_SENTENCEPIECE_MODEL = "MPT_SENTENCEPIECE_MODEL"


@gin.configurable
def default_vocabulary(sentencepiece_model_path: Optional[str] = None,
                       extra_ids: int = DEFAULT_EXTRA_IDS) -> seqio.SentencePieceVocabulary:
  """T5's SentencePiece vocabulary, or the model named by gin or MPT_SENTENCEPIECE_MODEL.

  SentencePieceVocabulary reads the model file lazily, so this never touches the path.
  """
  path = (sentencepiece_model_path or os.environ.get(ENV_SENTENCEPIECE_MODEL)
          or DEFAULT_SENTENCEPIECE_MODEL)
  return seqio.SentencePieceVocabulary(path, extra_ids=extra_ids)


class DeferredVocabulary(seqio.Vocabulary):
  """Builds its vocabulary (by default `default_vocabulary()`) on first use, then delegates."""

  def __init__(self, build: Callable[[], seqio.Vocabulary] = default_vocabulary):
    super().__init__()
    self._build = build
    self._vocabulary: Optional[seqio.Vocabulary] = None

  @property
  def vocabulary(self) -> seqio.Vocabulary:
    if self._vocabulary is None:
      self._vocabulary = self._build()
    return self._vocabulary

  @property
  def bos_id(self):
    return self.vocabulary.bos_id

  @property
  def eos_id(self):
    return self.vocabulary.eos_id

  @property
  def pad_id(self):
    return self.vocabulary.pad_id

  @property
  def unk_id(self):
    return self.vocabulary.unk_id

  @property
  def extra_ids(self):
    return self.vocabulary.extra_ids

  @property
  def vocab_size(self):
    return self.vocabulary.vocab_size

  @property
  def _base_vocab_size(self):
    return self.vocabulary.vocab_size - self.vocabulary.extra_ids

  def encode(self, s):
    return self.vocabulary.encode(s)

  def decode(self, ids):
    return self.vocabulary.decode(ids)

  def encode_tf(self, s):
    return self.vocabulary.encode_tf(s)

  def decode_tf(self, ids):
    return self.vocabulary.decode_tf(ids)

  # seqio.Vocabulary's abstract hooks; the public methods above never reach them.
  def _encode(self, s):
    return self.encode(s)

  def _decode(self, ids):
    return self.decode(ids)

  def _encode_tf(self, s):
    return self.encode_tf(s)

  def _decode_tf(self, ids):
    return self.decode_tf(ids)

  def __str__(self):
    resolved = self._vocabulary if self._vocabulary is not None else "not built yet"
    return f"DeferredVocabulary({resolved})"
