"""Greedy decoding over fixed logit tables: tokens, EOS padding, early exit, length limit."""

import jax
import jax.numpy as jnp
import numpy as np

from mpt_jax.model import decoding

VOCAB = 8
EOS = 1


def _one_hot_logits(tokens):
  return jax.nn.one_hot(tokens, VOCAB) * 10.0


def _table_step(table, visited):
  """Logits at `position` are one-hot of table[:, position]; records each position run and
  threads a step counter through the cache."""
  table = jnp.asarray(table, jnp.int32)

  def step(cache, tokens, position):
    assert tokens.shape == (table.shape[0], 1)
    jax.debug.callback(lambda p: visited.append(int(p)), position, ordered=True)
    cache = jnp.int32(1) if cache is None else cache + 1
    return _one_hot_logits(table[:, position]), cache

  return step


def test_greedy_takes_the_argmax_tokens_and_pads_after_eos():
  table = [[3, 4, EOS, 5, 6, 7],
           [5, EOS, 2, 2, 2, 2],
           [EOS, 6, 6, 6, 6, 6]]
  visited = []
  tokens = np.asarray(decoding.greedy(_table_step(table, visited), 3, 6, eos_id=EOS))
  np.testing.assert_array_equal(tokens, [[3, 4, EOS, 0, 0, 0],
                                         [5, EOS, 0, 0, 0, 0],
                                         [EOS, 0, 0, 0, 0, 0]])
  # Every row has ended by position 2: positions 3 to 5 are never run.
  assert visited == [0, 1, 2]
  jitted = jax.jit(lambda: decoding.greedy(_table_step(table, []), 3, 6, eos_id=EOS))()
  np.testing.assert_array_equal(np.asarray(jitted), tokens)


def test_greedy_keeps_decoding_while_any_row_is_unfinished_and_stops_at_max_length():
  table = [[3, EOS, 4, 4, 4, 4],
           [2, 3, 4, 5, 6, 7]]  # never ends
  visited = []
  tokens = np.asarray(decoding.greedy(_table_step(table, visited), 2, 4, eos_id=EOS))
  assert tokens.shape == (2, 4)
  np.testing.assert_array_equal(tokens, [[3, EOS, 0, 0], [2, 3, 4, 5]])
  assert visited == [0, 1, 2, 3]


def test_greedy_feeds_back_its_previous_token_starting_from_bos():
  # transition[row, previous token] -> next token; each row follows its own chain.
  transition = np.zeros((2, VOCAB), np.int32)
  transition[0, [2, 3, 4]] = [3, 4, EOS]  # bos 2 -> 3 -> 4 -> EOS
  transition[1, [2, 5, 6]] = [5, 6, EOS]  # bos 2 -> 5 -> 6 -> EOS
  transition[:, 0] = 7  # what a row would emit if fed padding instead of bos
  seen_first = []

  def step(cache, tokens, position):
    if cache is None:  # the first step, run eagerly before the loop
      seen_first.append(np.asarray(tokens))
      cache = jnp.int32(0)
    rows = jnp.arange(2)
    return _one_hot_logits(jnp.asarray(transition)[rows, tokens[:, 0]]), cache + 1

  tokens = decoding.greedy(step, 2, 5, eos_id=EOS, bos_id=2)
  np.testing.assert_array_equal(np.asarray(tokens), [[3, 4, EOS, 0, 0], [5, 6, EOS, 0, 0]])
  np.testing.assert_array_equal(seen_first[0], [[2], [2]])


def test_a_custom_eos_id_ends_rows():
  table = [[3, 4, 5, 6], [4, 3, 2, 2]]
  tokens = decoding.greedy(_table_step(table, []), 2, 4, eos_id=4)
  np.testing.assert_array_equal(np.asarray(tokens), [[3, 4, 0, 0], [4, 0, 0, 0]])
