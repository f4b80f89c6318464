"""T5's span-corruption objective as a deterministic SeqIO preprocessor.

seqio 0.0.20 ships no span corruption and t5.data is not a dependency, so this is a
small one. About `noise_density` of the tokens, in spans of mean length
`mean_noise_span_length`, are dropped from the inputs; each span is replaced by one
sentinel and the targets list every sentinel followed by the tokens it hid. As in
T5, sentinel i is id `vocab_size - 1 - i`, and the text starts with a kept span
and ends with a noise span. Which tokens are noised is a pure function of the
token sequence and `seed`, so an example always reads the same.
"""

import functools
import zlib

import numpy as np
import seqio
import tensorflow as tf


def _num_noise(length: int, noise_density: float) -> int:
  return min(max(int(round(length * noise_density)), 1), length - 1)


def num_spans(length: int, noise_density: float, mean_noise_span_length: float) -> int:
  num_noise = _num_noise(length, noise_density)
  return max(1, min(int(round(num_noise / mean_noise_span_length)), num_noise,
                    length - num_noise))


def target_length(length: int, noise_density: float,
                  mean_noise_span_length: float) -> int:
  """Tokens in the targets for `length` clean tokens: noise, sentinels and EOS."""
  return (_num_noise(length, noise_density)
          + num_spans(length, noise_density, mean_noise_span_length) + 1)


def _partition(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
  """`total` split into `parts` positive lengths at random."""
  cuts = np.sort(rng.choice(np.arange(1, total), parts - 1, replace=False))
  return np.diff(np.concatenate([[0], cuts, [total]]))


def noise_mask(length: int, noise_density: float, mean_noise_span_length: float,
               rng: np.random.Generator) -> np.ndarray:
  """A boolean mask of the noised positions: alternating kept and noise spans."""
  if length < 2:
    raise ValueError(f"Span corruption needs at least 2 tokens, got {length}.")
  num_noise = _num_noise(length, noise_density)
  spans = num_spans(length, noise_density, mean_noise_span_length)
  noise_lengths = _partition(num_noise, spans, rng)
  kept_lengths = _partition(length - num_noise, spans, rng)
  mask = np.zeros(length, bool)
  position = 0
  for kept, noise in zip(kept_lengths, noise_lengths):
    position += kept
    mask[position:position + noise] = True
    position += noise
  return mask


def corrupt(tokens: np.ndarray, mask: np.ndarray, vocab_size: int):
  """(inputs, targets): noise spans -> sentinels in the inputs, spelt out in targets."""
  inputs, targets = [], []
  sentinel = vocab_size
  for position, token in enumerate(tokens):
    starts_span = mask[position] and (position == 0 or not mask[position - 1])
    if starts_span:
      sentinel -= 1
      inputs.append(sentinel)
      targets.append(sentinel)
    (targets if mask[position] else inputs).append(token)
  return np.array(inputs, np.int32), np.array(targets, np.int32)


def max_sentinels(vocabulary: seqio.Vocabulary) -> int:
  """How many top ids can serve as sentinels without colliding with text ids.

  Extra ids are reserved for this. A byte vocabulary without them keeps ByT5's
  habit: its top ids are bytes 0x80..0xFF, which never occur in ASCII text.
  """
  if vocabulary.extra_ids:
    return vocabulary.extra_ids
  if isinstance(vocabulary, seqio.ByteVocabulary):
    return 128
  return 0


def check_sentinels(vocabulary: seqio.Vocabulary, max_length: int, noise_density: float,
                    mean_noise_span_length: float) -> None:
  needed = num_spans(max_length, noise_density, mean_noise_span_length)
  available = max_sentinels(vocabulary)
  if needed > available:
    raise ValueError(
        f"Span corruption of up to {max_length} tokens needs {needed} sentinel ids, but "
        f"{type(vocabulary).__name__} has {available} free ones; give the vocabulary "
        f"extra_ids >= {needed} (a SentencePiece model for T5 has 100).")


def _corrupt_tokens(tokens, vocab_size, noise_density, mean_noise_span_length, seed):
  rng = np.random.default_rng([seed, zlib.crc32(tokens.astype(np.int32).tobytes())])
  mask = noise_mask(len(tokens), noise_density, mean_noise_span_length, rng)
  return corrupt(tokens, mask, vocab_size)


def span_corruption(dataset: tf.data.Dataset, output_features,
                    noise_density: float = 0.15, mean_noise_span_length: float = 3.0,
                    seed: int = 0) -> tf.data.Dataset:
  """Turns tokenized 'targets' (the clean text) into span-corrupted inputs/targets."""
  corrupt_fn = functools.partial(
      _corrupt_tokens, vocab_size=output_features["targets"].vocabulary.vocab_size,
      noise_density=noise_density, mean_noise_span_length=mean_noise_span_length,
      seed=seed)

  def corrupt_example(example):
    inputs, targets = tf.numpy_function(corrupt_fn, [example["targets"]],
                                        (tf.int32, tf.int32), stateful=False)
    return {**example, "inputs": tf.ensure_shape(inputs, [None]),
            "targets": tf.ensure_shape(targets, [None])}

  return dataset.map(corrupt_example, num_parallel_calls=tf.data.AUTOTUNE)
