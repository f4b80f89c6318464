"""A SentencePiece vocabulary for the synthetic suite, trained on first use and cached.

The suite's lexicon has a few hundred words, so a BPE model of 800 pieces keeps most
words whole: inputs become at most 28 tokens instead of up to 101 bytes, and a tiny
backbone sees words, not letters. The model is trained single-threaded on a fixed
text (corpus sentences, every task's first train inputs, the class-label names), so
it is the same file on every machine; training takes about a second. It is written
once, atomically, to `$MPT_SYNTH_SPM` or `~/.cache/mpt_jax/` (`$XDG_CACHE_HOME`
respected); later uses only read it.

Span corruption takes its sentinels from the 100 extra ids at the top of the
vocabulary, as T5's SentencePiece models do.
"""

import io
import os
import pathlib
import tempfile
from typing import Optional, Union

import seqio
import sentencepiece as spm

from tasks.synthetic import corpus
from tasks.synthetic import sampling
from tasks.synthetic import suite

ENV_VAR = "MPT_SYNTH_SPM"
VERSION = 1  # bump when the training text or options change: a new file name
VOCAB_SIZE = 800
EXTRA_IDS = 100
CORPUS_SENTENCES = 20000
EXAMPLES_PER_TASK = 1000
# Feature lengths that never truncate the suite with this vocabulary (EOS included):
# inputs are at most 28 pieces, targets at most 4, span-corruption targets 6.
SEQUENCE_LENGTHS = {"inputs": 32, "targets": 8}


def default_path() -> pathlib.Path:
  cache = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(cache) / "mpt_jax" / f"synth_bpe{VOCAB_SIZE}_v{VERSION}.model"


def training_text(corpus_sentences: int = CORPUS_SENTENCES,
                  examples_per_task: int = EXAMPLES_PER_TASK, seed: int = 0) -> list[str]:
  """The fixed text the model is trained on: corpus sentences (another seed than the
  pretraining task's passages), then each task's first train inputs and, for
  classification tasks, their label names. Inputs and labels are separate lines, so
  nothing pairs an input with its label."""
  lines = corpus.pretraining_corpus(corpus_sentences, seed=seed + 1)
  for spec in suite.TASKS:
    for example in sampling.examples(spec, "train", examples_per_task, seed):
      lines.append(example["inputs"])
    if spec.labels:
      lines.extend(list(spec.labels) * (examples_per_task // len(spec.labels)))
  return lines


def train_model(vocab_size: int = VOCAB_SIZE, **text_options) -> bytes:
  """A serialized BPE SentencePiece model (pad 0, EOS 1, UNK 2, no BOS)."""
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(training_text(**text_options)), model_writer=model,
      vocab_size=vocab_size, model_type="bpe", character_coverage=1.0,
      byte_fallback=False, num_threads=1, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
      split_digits=True, minloglevel=2)
  return model.getvalue()


def model_path(path: Union[None, str, os.PathLike] = None) -> pathlib.Path:
  """`path`, else $MPT_SYNTH_SPM, else `default_path()`; trained and written if absent."""
  path = pathlib.Path(path or os.environ.get(ENV_VAR) or default_path())
  if not path.is_file():
    path.parent.mkdir(parents=True, exist_ok=True)
    # Another process may train it at the same time: each writes its own temporary
    # file and renames it into place; both are the same bytes.
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name,
                                     suffix=".tmp", delete=False) as tmp:
      tmp.write(train_model())
    os.replace(tmp.name, path)
  return path


def sentencepiece_vocabulary(path: Optional[str] = None) -> seqio.SentencePieceVocabulary:
  """The suite's SentencePiece vocabulary with 100 sentinel ids (trained if needed)."""
  return seqio.SentencePieceVocabulary(str(model_path(path)), extra_ids=EXTRA_IDS)
