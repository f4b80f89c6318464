"""The decoders over fixed logit tables: greedy (tokens, EOS padding, early exit, length
limit), sampling (temperature, top-k, the model's log-likelihood) and beam search's t5x
rules (2k candidates, EOS, the live fallback, early stop) and its settings' checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
  tokens = np.asarray(decoding.greedy(_table_step(table, visited), 3, 6, eos_id=EOS).tokens)
  np.testing.assert_array_equal(tokens, [[3, 4, EOS, 0, 0, 0],
                                         [5, EOS, 0, 0, 0, 0],
                                         [EOS, 0, 0, 0, 0, 0]])
  # Every row has ended by position 2: positions 3 to 5 are never run.
  assert visited == [0, 1, 2]
  jitted = jax.jit(lambda: decoding.greedy(_table_step(table, []), 3, 6, eos_id=EOS))().tokens
  np.testing.assert_array_equal(np.asarray(jitted), tokens)


def test_greedy_keeps_decoding_while_any_row_is_unfinished_and_stops_at_max_length():
  table = [[3, EOS, 4, 4, 4, 4],
           [2, 3, 4, 5, 6, 7]]  # never ends
  visited = []
  tokens = np.asarray(decoding.greedy(_table_step(table, visited), 2, 4, eos_id=EOS).tokens)
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

  tokens = decoding.greedy(step, 2, 5, eos_id=EOS, bos_id=2).tokens
  np.testing.assert_array_equal(np.asarray(tokens), [[3, 4, EOS, 0, 0], [5, 6, EOS, 0, 0]])
  np.testing.assert_array_equal(seen_first[0], [[2], [2]])


def test_a_custom_eos_id_ends_rows():
  table = [[3, 4, 5, 6], [4, 3, 2, 2]]
  tokens = decoding.greedy(_table_step(table, []), 2, 4, eos_id=4).tokens
  np.testing.assert_array_equal(np.asarray(tokens), [[3, 4, 0, 0], [4, 0, 0, 0]])


def test_greedy_reports_the_log_likelihood_of_its_tokens_up_to_eos():
  table = [[3, EOS, 4, 4], [2, 3, 4, 5]]
  decoded = decoding.greedy(_table_step(table, []), 2, 4, eos_id=EOS)
  one_hot = np.asarray(_one_hot_logits(jnp.asarray(table)), np.float64)
  token_log_prob = (one_hot - np.log(np.exp(one_hot).sum(-1, keepdims=True))).max(-1)
  np.testing.assert_allclose(np.asarray(decoded.log_probs),
                             [token_log_prob[0, :2].sum(), token_log_prob[1].sum()], rtol=1e-3)


# --- sampling -------------------------------------------------------------------

LOGITS = np.log(np.array([0.0001, 0.0001, 0.5, 0.3, 0.15, 0.0496, 0.0001, 0.0001]))


def _fixed_distribution_step(batch):
  def step(cache, tokens, position):
    return jnp.broadcast_to(jnp.asarray(LOGITS, jnp.float32), (batch, VOCAB)), 0
  return step


def test_sampling_at_temperature_one_follows_the_models_distribution():
  batch = 4000
  decoded = decoding.sample(_fixed_distribution_step(batch), batch, 1, jax.random.PRNGKey(0))
  frequencies = np.bincount(np.asarray(decoded.tokens[:, 0]), minlength=VOCAB) / batch
  np.testing.assert_allclose(frequencies, np.exp(LOGITS), atol=0.03)
  np.testing.assert_allclose(np.asarray(decoded.log_probs),
                             LOGITS[np.asarray(decoded.tokens[:, 0])], rtol=1e-5)


def test_top_k_sampling_draws_only_the_k_likeliest_tokens_and_low_temperature_is_greedy():
  batch = 500
  step = _fixed_distribution_step(batch)
  top2 = decoding.sample(step, batch, 1, jax.random.PRNGKey(1), top_k=2).tokens
  assert set(np.unique(np.asarray(top2)).tolist()) == {2, 3}
  cold = decoding.sample(step, batch, 1, jax.random.PRNGKey(1), temperature=1e-3).tokens
  assert set(np.unique(np.asarray(cold)).tolist()) == {2}


def test_sampling_is_reproducible_from_its_key_and_varies_with_it():
  step = _fixed_distribution_step(64)
  first = decoding.sample(step, 64, 3, jax.random.PRNGKey(5)).tokens
  again = decoding.sample(step, 64, 3, jax.random.PRNGKey(5)).tokens
  other = decoding.sample(step, 64, 3, jax.random.PRNGKey(6)).tokens
  np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
  assert not np.array_equal(np.asarray(first), np.asarray(other))


# --- beam search's rules ----------------------------------------------------------

def _prefix_step(log_probs_of, batch_rows, visited=None):
  """Logits from a function of each row's previous token and the position."""
  def step(cache, tokens, position):
    if visited is not None:
      jax.debug.callback(lambda p: visited.append(int(p)), position, ordered=True)
    return log_probs_of(tokens[:, 0], position), jnp.zeros((batch_rows,))
  return step


def _distribution(*pairs, rest=1e-6):
  p = np.full(VOCAB, rest)
  for token, probability in pairs:
    p[token] = probability
  return np.log(p / p.sum()).astype(np.float32)


def test_beam_search_returns_live_beams_when_nothing_finished():
  # EOS is never among the 2k best extensions: every example ends without a finished beam.
  table = jnp.asarray(np.stack([_distribution((2, 0.6), (3, 0.39), (EOS, 1e-9))] * VOCAB))
  step = _prefix_step(lambda previous, position: table[previous], batch_rows=2 * 2)
  beams = decoding.beam_search(step, 2, 3, 2, alpha=0.0, eos_id=EOS)
  np.testing.assert_array_equal(np.asarray(beams.tokens[0, 0]), [2, 2, 2])
  np.testing.assert_array_equal(np.asarray(beams.tokens[0, 1]), [2, 2, 3])
  np.testing.assert_allclose(np.asarray(beams.log_probs[0, 0]), 3 * table[2, 2], rtol=1e-5)


def test_beam_search_prefers_a_finished_beam_and_penalises_short_ones_by_alpha():
  # After token 2, EOS is likely; after token 3, a long chain of near-certain tokens.
  rows = np.stack([_distribution((4, 0.9), (2, 0.1))] * VOCAB)
  rows[0] = _distribution((2, 0.55), (3, 0.45))  # the first position (bos is 0)
  rows[2] = _distribution((EOS, 0.5), (5, 0.5))
  rows[3] = _distribution((4, 0.999))
  rows[4] = _distribution((4, 0.5), (EOS, 0.5))
  table = jnp.asarray(rows)
  step = _prefix_step(lambda previous, position: table[previous], batch_rows=2)

  def best(alpha):
    beams = decoding.beam_search(step, 1, 5, 2, alpha=alpha, eos_id=EOS)
    return np.asarray(beams.tokens[0, 0]).tolist(), float(beams.scores[0, 0])

  # alpha 0: [2, EOS] (0.275) beats [3, 4, EOS] (0.2248); a large alpha rewards length.
  assert best(0.0)[0] == [2, EOS, 0, 0, 0]
  assert best(0.0)[1] == pytest.approx(np.log(0.55 * 0.5), rel=1e-4)
  assert best(1.5)[0] == [3, 4, EOS, 0, 0]
  assert best(1.5)[1] == pytest.approx(np.log(0.45 * 0.999 * 0.5) / (8 / 6) ** 1.5, rel=1e-3)


def test_beam_search_stops_once_no_live_beam_can_beat_the_worst_finished_one():
  rows = np.stack([_distribution((EOS, 0.5), (2, 0.3), (3, 0.2))] * VOCAB)
  table = jnp.asarray(rows)
  visited = []
  step = _prefix_step(lambda previous, position: table[previous], 2, visited)
  beams = decoding.beam_search(step, 1, 8, 2, alpha=0.0, eos_id=EOS)
  # Position 0 finishes [EOS] (0.5); position 1 finishes [2, EOS] (0.15), and the best
  # live beam ([2, 2], 0.09) can no longer beat it, so positions 2..7 never run.
  assert visited == [0, 1]
  np.testing.assert_array_equal(np.asarray(beams.tokens[0, :, :2]), [[EOS, 0], [2, EOS]])


@pytest.mark.parametrize("settings, message", [
    (dict(beam_size=0), "beam_size must be >= 1"),
    (dict(alpha=-1.0), "alpha must be >= 0"),
    (dict(temperature=-0.5), "temperature and top_k must be >= 0"),
    (dict(beam_size=4, temperature=0.7), "beam search .* does not sample"),
    (dict(top_k=5), "top_k samples, so it needs temperature > 0"),
])
def test_decoding_settings_that_contradict_each_other_are_refused(settings, message):
  with pytest.raises(ValueError, match=message):
    decoding.DecodingConfig(**settings)
