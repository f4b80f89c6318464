"""Greedy decoding over a cached decoder step, jit-friendly (static shapes)."""

from typing import Callable

import jax
import jax.numpy as jnp

# step(cache, tokens [B, 1], position) -> (logits [B, V], cache); cache None at step 0.
StepFn = Callable


def greedy(step: StepFn, batch_size: int, max_length: int, eos_id: int = 1,
           bos_id: int = 0) -> jax.Array:
  """Token ids [B, max_length]; positions after an example's EOS are 0 (padding).

  The first step runs outside the loop because it creates the cache (including the
  encoder-decoder keys and values, projected once).
  """
  tokens = jnp.full((batch_size, max_length), 0, jnp.int32)
  start = jnp.full((batch_size, 1), bos_id, jnp.int32)
  logits, cache = step(None, start, 0)
  first = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  tokens = tokens.at[:, 0].set(first)
  done = first == eos_id

  def cond(carry):
    position, _, _, done = carry
    return (position < max_length) & ~jnp.all(done)

  def body(carry):
    position, tokens, cache, done = carry
    previous = jax.lax.dynamic_slice_in_dim(tokens, position - 1, 1, axis=1)
    logits, cache = step(cache, previous, position)
    chosen = jnp.where(done, 0, jnp.argmax(logits, axis=-1).astype(jnp.int32))
    tokens = jax.lax.dynamic_update_slice_in_dim(tokens, chosen[:, None], position, axis=1)
    return position + 1, tokens, cache, done | (chosen == eos_id)

  _, tokens, _, _ = jax.lax.while_loop(cond, body, (jnp.int32(1), tokens, cache, done))
  return tokens
