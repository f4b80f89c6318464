"""The vocabulary catalog tasks tokenize with: T5's SentencePiece model unless told otherwise.

The model path is the gin binding `default_vocabulary.sentencepiece_model_path` (which
the commands' `--sentencepiece_model` flag sets), e.g. a local copy on a machine without
gs:// access, else T5's public model, gs://t5-data/vocabs/cc_all.32000/sentencepiece.model.

Catalog tasks hold a `DeferredVocabulary`, which makes that choice on first use rather than
at import: t5x-style gin files import the task module before their bindings are applied, so
a vocabulary built at import time would never see the binding.
"""

from typing import Callable, Optional

import gin
import seqio

DEFAULT_SENTENCEPIECE_MODEL = "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"
DEFAULT_EXTRA_IDS = 100  # T5's sentinels: 32,000 pieces + 100 extra ids


@gin.configurable
def default_vocabulary(sentencepiece_model_path: Optional[str] = None,
                       extra_ids: int = DEFAULT_EXTRA_IDS) -> seqio.SentencePieceVocabulary:
  """T5's SentencePiece vocabulary, or the model the gin binding names.

  SentencePieceVocabulary reads the model file lazily, so this never touches the path.
  """
  return seqio.SentencePieceVocabulary(
      sentencepiece_model_path or DEFAULT_SENTENCEPIECE_MODEL, extra_ids=extra_ids)


def _delegated(name: str) -> property:
  """A property read from the built vocabulary."""
  return property(lambda self: getattr(self.vocabulary, name))


class DeferredVocabulary(seqio.Vocabulary):
  """Builds its vocabulary (by default `default_vocabulary()`) on first use, then delegates."""

  bos_id = _delegated("bos_id")
  eos_id = _delegated("eos_id")
  pad_id = _delegated("pad_id")
  unk_id = _delegated("unk_id")
  extra_ids = _delegated("extra_ids")
  vocab_size = _delegated("vocab_size")

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
  def _base_vocab_size(self):
    return self.vocabulary.vocab_size - self.vocabulary.extra_ids

  # The public methods delegate whole (the built vocabulary handles EOS, unknown ids and
  # its own extra ids); seqio.Vocabulary's abstract hooks are never reached through them.
  def encode(self, s):
    return self.vocabulary.encode(s)

  def decode(self, ids):
    return self.vocabulary.decode(ids)

  def encode_tf(self, s):
    return self.vocabulary.encode_tf(s)

  def decode_tf(self, ids):
    return self.vocabulary.decode_tf(ids)

  _encode, _decode, _encode_tf, _decode_tf = encode, decode, encode_tf, decode_tf

  def __str__(self):
    resolved = self._vocabulary if self._vocabulary is not None else "not built yet"
    return f"DeferredVocabulary({resolved})"
