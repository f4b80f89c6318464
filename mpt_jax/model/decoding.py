"""Autoregressive decoding over a cached decoder step: greedy, temperature / top-k
sampling, and beam search with t5x's semantics. Every decoder is one `while_loop` over
static shapes, so it compiles once per (batch, length) and runs inside jit.

A step function `step(cache, tokens [N, 1], position) -> (logits [N, V], cache)` runs
the decoder at one position; it gets `cache=None` on the first call, which creates the
cache (the encoder-decoder keys and values are projected once, there).
"""

import dataclasses
from typing import Callable, NamedTuple, Optional

import gin
import jax
import jax.numpy as jnp

StepFn = Callable
# A finite "minus infinity", as t5x's: sums and ratios of it never give NaN.
NEG_INF = -1.0e7


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DecodingConfig:
  """How predictions are decoded. Hashable, so a jitted decoder takes it as static.

  beam_size > 1 runs beam search (`alpha`: t5x's length penalty, ((5 + length) / 6)^alpha);
  temperature > 0 samples, from the `top_k` likeliest tokens when top_k > 0; otherwise
  decoding is greedy.
  """
  beam_size: int = 1
  alpha: float = 0.6
  temperature: float = 0.0
  top_k: int = 0
  seed: int = 0

  def __post_init__(self):
    if self.beam_size < 1:
      raise ValueError(f"DecodingConfig.beam_size must be >= 1, got {self.beam_size}.")
    if self.alpha < 0:
      raise ValueError(f"DecodingConfig.alpha must be >= 0 (0: no length penalty), got "
                       f"{self.alpha}.")
    if self.temperature < 0 or self.top_k < 0:
      raise ValueError("DecodingConfig.temperature and top_k must be >= 0, got "
                       f"{self.temperature} and {self.top_k}.")
    if self.beam_size > 1 and (self.temperature > 0 or self.top_k > 0):
      raise ValueError("DecodingConfig: beam search (beam_size > 1) does not sample; set "
                       "temperature = 0 and top_k = 0, or beam_size = 1 to sample.")
    if self.top_k > 0 and self.temperature == 0:
      raise ValueError("DecodingConfig.top_k samples, so it needs temperature > 0 "
                       "(1.0 samples from the model's own distribution).")

  @property
  def method(self) -> str:
    if self.beam_size > 1:
      return "beam"
    return "sample" if self.temperature > 0 else "greedy"


class Decoded(NamedTuple):
  """tokens [B, L] (0 after an example's EOS) and their log-likelihood [B] under the
  model, EOS included."""
  tokens: jax.Array
  log_probs: jax.Array


def _token_log_prob(logits, tokens):
  return jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, None], axis=-1)[:, 0]


def _autoregressive(step: StepFn, pick, batch_size: int, max_length: int, eos_id: int,
                    bos_id: int) -> Decoded:
  """Feeds each row its own previous token until every row has emitted EOS or the
  length is reached. `pick(logits [B, V], position)` chooses the next tokens."""

  def advance(position, previous, cache, tokens, log_probs, done):
    logits, cache = step(cache, previous, position)
    chosen = jnp.where(done, 0, pick(logits, position)).astype(jnp.int32)
    log_probs = log_probs + jnp.where(done, 0.0, _token_log_prob(logits, chosen))
    tokens = jax.lax.dynamic_update_slice_in_dim(tokens, chosen[:, None], position, axis=1)
    return cache, tokens, log_probs, done | (chosen == eos_id)

  tokens = jnp.zeros((batch_size, max_length), jnp.int32)
  start = jnp.full((batch_size, 1), bos_id, jnp.int32)
  zeros, not_done = jnp.zeros((batch_size,), jnp.float32), jnp.zeros((batch_size,), bool)
  # The first step runs outside the loop: it creates the cache, which the loop carries.
  cache, tokens, log_probs, done = advance(0, start, None, tokens, zeros, not_done)

  def cond(carry):
    position, _, _, _, done = carry
    return (position < max_length) & ~jnp.all(done)

  def body(carry):
    position, cache, tokens, log_probs, done = carry
    previous = jax.lax.dynamic_slice_in_dim(tokens, position - 1, 1, axis=1)
    return (position + 1, *advance(position, previous, cache, tokens, log_probs, done))

  _, _, tokens, log_probs, _ = jax.lax.while_loop(
      cond, body, (jnp.int32(1), cache, tokens, log_probs, done))
  return Decoded(tokens, log_probs)


def greedy(step: StepFn, batch_size: int, max_length: int, eos_id: int = 1,
           bos_id: int = 0) -> Decoded:
  """The likeliest token at every position."""
  pick = lambda logits, _: jnp.argmax(logits, axis=-1)
  return _autoregressive(step, pick, batch_size, max_length, eos_id, bos_id)


def sample(step: StepFn, batch_size: int, max_length: int, rng: jax.Array, *,
           temperature: float = 1.0, top_k: int = 0, eos_id: int = 1,
           bos_id: int = 0) -> Decoded:
  """Samples each token from softmax(logits / temperature), restricted to the `top_k`
  likeliest tokens when top_k > 0. The log-likelihood reported is the model's own
  (temperature 1, all tokens), so samples and beams are scored alike."""

  def pick(logits, position):
    logits = logits / temperature
    if top_k:
      kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
      logits = jnp.where(logits < kth, NEG_INF, logits)
    return jax.random.categorical(jax.random.fold_in(rng, position), logits)

  return _autoregressive(step, pick, batch_size, max_length, eos_id, bos_id)


class Beams(NamedTuple):
  """Each example's `beam_size` best sequences, best first: tokens [B, k, L], their
  length-penalised scores [B, k] and log-likelihoods [B, k]."""
  tokens: jax.Array
  scores: jax.Array
  log_probs: jax.Array


class _BeamState(NamedTuple):
  position: jax.Array
  live_tokens: jax.Array  # [B, k, L]
  live_log_probs: jax.Array  # [B, k]
  finished_tokens: jax.Array  # [B, k, L]
  finished_scores: jax.Array  # [B, k], length-penalised
  finished_log_probs: jax.Array  # [B, k]
  finished: jax.Array  # [B, k] bool: whether the slot holds a sequence
  cache: object


def length_penalty(alpha: float, length) -> jax.Array:
  """t5x's (and GNMT's) brevity penalty: a beam's log-likelihood is divided by this."""
  return jnp.power((5.0 + length) / 6.0, alpha)


def _gather_beams(x, beam_indices):
  """x [B, k_old, ...] -> [B, k_new, ...] along beam_indices [B, k_new]."""
  return jnp.take_along_axis(x, beam_indices.reshape(beam_indices.shape + (1,) * (x.ndim - 2)),
                             axis=1)


def gather_rows(cache, rows):
  """Every cache leaf reordered along its first (batch x beam) axis."""
  return jax.tree.map(lambda x: jnp.take(x, rows, axis=0), cache)


def beam_search(step: StepFn, batch_size: int, max_length: int, beam_size: int, *,
                alpha: float = 0.6, eos_id: int = 1, bos_id: int = 0,
                gather_cache: Callable = gather_rows) -> Beams:
  """Beam search as t5x runs it.

  The step function sees batch_size * beam_size rows, example-major (row b * k + j is
  beam j of example b), and `gather_cache(cache, rows)` reorders its cache rows as
  beams are chosen (the default gathers every leaf). At each position the 2k likeliest
  extensions of the k live beams are taken; those ending in EOS enter the finished set,
  scored log-likelihood / length_penalty(alpha, length with EOS), and the k likeliest
  others stay live. The search stops at `max_length` or when no live beam can beat the
  k-th finished one. An example with no finished sequence returns its live beams.
  """
  k, n = beam_size, batch_size * beam_size

  def extend(state: _BeamState, logits) -> _BeamState:
    vocab = logits.shape[-1]
    log_probs = (jax.nn.log_softmax(logits).reshape(batch_size, k, vocab)
                 + state.live_log_probs[:, :, None])
    top_log_probs, top_indices = jax.lax.top_k(log_probs.reshape(batch_size, k * vocab), 2 * k)
    parents, new_tokens = top_indices // vocab, (top_indices % vocab).astype(jnp.int32)
    candidates = _gather_beams(state.live_tokens, parents)
    candidates = jax.lax.dynamic_update_slice_in_dim(
        candidates, new_tokens[:, :, None], state.position, axis=2)
    is_eos = new_tokens == eos_id
    # Extensions of beams that were never alive (a tiny vocabulary at the first
    # position) carry ~NEG_INF and must not count as finished.
    ended = is_eos & (top_log_probs > NEG_INF / 2)

    live_log_probs, keep = jax.lax.top_k(jnp.where(is_eos, NEG_INF, top_log_probs), k)
    live_parents = jnp.take_along_axis(parents, keep, axis=1)
    rows = (jnp.arange(batch_size)[:, None] * k + live_parents).reshape(n)

    scores = jnp.where(ended, top_log_probs / length_penalty(alpha, state.position + 1),
                       NEG_INF)
    pool_scores = jnp.concatenate([state.finished_scores, scores], axis=1)
    finished_scores, best = jax.lax.top_k(pool_scores, k)
    pool = lambda old, new: _gather_beams(jnp.concatenate([old, new], axis=1), best)
    return _BeamState(
        position=state.position + 1,
        live_tokens=_gather_beams(candidates, keep),
        live_log_probs=live_log_probs,
        finished_tokens=pool(state.finished_tokens, candidates),
        finished_scores=finished_scores,
        finished_log_probs=pool(state.finished_log_probs, top_log_probs),
        finished=pool(state.finished, ended),
        cache=gather_cache(state.cache, rows))

  def previous_tokens(state):
    last = jax.lax.dynamic_slice_in_dim(state.live_tokens, state.position - 1, 1, axis=2)
    return last.reshape(n, 1)

  def cond(state: _BeamState):
    best_live = jnp.max(state.live_log_probs, axis=1) / length_penalty(alpha, max_length)
    worst_finished = jnp.where(state.finished, state.finished_scores, NEG_INF).min(axis=1)
    return (state.position < max_length) & ~jnp.all(worst_finished > best_live)

  def body(state: _BeamState):
    logits, cache = step(state.cache, previous_tokens(state), state.position)
    return extend(state._replace(cache=cache), logits)

  zeros = jnp.zeros((batch_size, k, max_length), jnp.int32)
  # Only beam 0 is alive at the start, so the first position's 2k candidates are
  # distinct tokens rather than k copies of each.
  first_live = jnp.where(jnp.arange(k) == 0, 0.0, NEG_INF)
  state = _BeamState(
      position=jnp.int32(0), live_tokens=zeros,
      live_log_probs=jnp.broadcast_to(first_live, (batch_size, k)), finished_tokens=zeros,
      finished_scores=jnp.full((batch_size, k), NEG_INF),
      finished_log_probs=jnp.full((batch_size, k), NEG_INF),
      finished=jnp.zeros((batch_size, k), bool), cache=None)
  logits, cache = step(None, jnp.full((n, 1), bos_id, jnp.int32), 0)
  state = jax.lax.while_loop(cond, body, extend(state._replace(cache=cache), logits))

  any_finished = jnp.any(state.finished, axis=1)
  choose = lambda finished, live: jnp.where(
      any_finished.reshape((-1,) + (1,) * (finished.ndim - 1)), finished, live)
  return Beams(tokens=choose(state.finished_tokens, state.live_tokens),
               scores=choose(state.finished_scores, state.live_log_probs),
               log_probs=choose(state.finished_log_probs, state.live_log_probs))


def decode(step: StepFn, batch_size: int, max_length: int, config: DecodingConfig, *,
           rng: Optional[jax.Array] = None, eos_id: int = 1,
           gather_cache: Callable = gather_rows) -> Decoded:
  """The decoder `config` names. For beam search the step must take batch * beam rows
  (see `beam_search`); the best beam of each example is returned."""
  if config.method == "beam":
    beams = beam_search(step, batch_size, max_length, config.beam_size, alpha=config.alpha,
                        eos_id=eos_id, gather_cache=gather_cache)
    return Decoded(beams.tokens[:, 0], beams.log_probs[:, 0])
  if config.method == "sample":
    rng = jax.random.PRNGKey(config.seed) if rng is None else rng
    return sample(step, batch_size, max_length, rng, temperature=config.temperature,
                  top_k=config.top_k, eos_id=eos_id)
  return greedy(step, batch_size, max_length, eos_id)
