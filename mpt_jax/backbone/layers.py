"""The building blocks of T5 in flax.linen: norms, projections, embeddings, attention
with a decoding cache, relative position biases and the feed-forward block.

Parameter names and logical axes are those of t5x's example T5 network, so a T5X
checkpoint maps one to one and t5x's partitioner reads the `params_axes` collection.
"""

from typing import Optional

import flax.linen as nn
from flax.linen import partitioning as nn_partitioning
import jax
import jax.numpy as jnp
import numpy as np

param_with_axes = nn_partitioning.param_with_axes
NEG_INF = -1e10
# Logical axes of the activations that cross layer boundaries, as t5x's T5 names them.
HIDDEN_AXES = ("batch", "length", "embed")
HEADS_AXES = ("batch", "heads", "length", "kv")
MLP_AXES = ("batch", "length", "mlp")


def constrain(x, logical_axes):
  """Pins an activation's sharding by its logical axes when the network is traced under
  a partitioner's rules (`Partitioner.activation_rules`); a no-op otherwise."""
  return nn_partitioning.with_sharding_constraint(x, logical_axes)


def key_padding_bias(key_mask, dtype):
  """[B, 1, 1, k] additive bias: 0 at real keys, -1e10 at padding.

  Only keys are masked (as HuggingFace does): a padded query's output is never
  read, and a [B, 1, 1, k] term fuses into the softmax instead of materialising a
  [B, H, q, k] mask in every layer.
  """
  return jnp.where(key_mask, 0.0, NEG_INF).astype(dtype)[:, None, None, :]


class RMSNorm(nn.Module):
  """T5's layer norm: scale only, no mean subtraction, computed in float32."""
  epsilon: float = 1e-6
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = x.astype(jnp.float32)
    scale = param_with_axes("scale", nn.initializers.ones, (x.shape[-1],),
                            jnp.float32, axes=("embed",))
    x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.epsilon)
    return (x * scale).astype(self.dtype)


class Dense(nn.Module):
  """A bias-free projection whose kernel is stored 2-D, as t5x's DenseGeneral does."""
  features: int
  kernel_axes: tuple[str, str]
  kernel_init: nn.initializers.Initializer = nn.initializers.variance_scaling(
      1.0, "fan_in", "truncated_normal")
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = param_with_axes("kernel", self.kernel_init, (x.shape[-1], self.features),
                             jnp.float32, axes=self.kernel_axes)
    return jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype))


class SplitHeads(nn.Module):
  """[B, L, d] -> [B, H, L, k]; the kernel is stored 2-D (d, H*k) as t5x stores it.

  Producing heads-major activations directly keeps XLA from transposing them
  around every attention matmul (and their gradients in the backward pass).
  """
  num_heads: int
  head_dim: int
  kernel_init: nn.initializers.Initializer
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = param_with_axes("kernel", self.kernel_init,
                             (x.shape[-1], self.num_heads * self.head_dim), jnp.float32,
                             axes=("embed", "joined_kv"))
    if x.shape[1] == 1:
      # A decoding step: reshaping its [B, 1, H*k] output is free, while a reshaped
      # kernel would be copied on every step of the decoding loop.
      y = jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype))
      return y.reshape(x.shape[0], 1, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)
    kernel = kernel.reshape(x.shape[-1], self.num_heads, self.head_dim)
    return jnp.einsum("bld,dhk->bhlk", x.astype(self.dtype), kernel.astype(self.dtype))


class MergeHeads(nn.Module):
  """[B, H, L, k] -> [B, L, d]; kernel stored 2-D (H*k, d)."""
  features: int
  kernel_init: nn.initializers.Initializer
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    heads, head_dim = x.shape[1], x.shape[3]
    kernel = param_with_axes("kernel", self.kernel_init, (heads * head_dim, self.features),
                             jnp.float32, axes=("joined_kv", "embed"))
    kernel = kernel.reshape(heads, head_dim, self.features)
    return jnp.einsum("bhlk,hkd->bld", x.astype(self.dtype), kernel.astype(self.dtype))


class Embed(nn.Module):
  """Token embedding (gather, or one-hot matmul on TPU) and the tied output head."""
  num_embeddings: int
  features: int
  dtype: jnp.dtype = jnp.float32
  one_hot: bool = False

  def setup(self):
    self.embedding = param_with_axes(
        "embedding", nn.initializers.normal(stddev=1.0),
        (self.num_embeddings, self.features), jnp.float32, axes=("vocab", "embed"))

  def __call__(self, tokens):
    if self.one_hot:
      one_hot = jax.nn.one_hot(tokens, self.num_embeddings, dtype=self.dtype)
      return jnp.dot(one_hot, self.embedding.astype(self.dtype))
    return jnp.take(self.embedding, tokens, axis=0).astype(self.dtype)

  def attend(self, x):
    """Logits against the embedding table, in float32 for stability."""
    return jnp.dot(x.astype(jnp.float32), self.embedding.T)


def relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance):
  """T5's log-spaced buckets of (key position - query position)."""
  bucket = 0
  n = -relative_position
  if bidirectional:
    num_buckets //= 2
    bucket += (n < 0).astype(np.int32) * num_buckets
    n = np.abs(n)
  else:
    n = np.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  log_ratio = np.log(np.maximum(n, 1) / max_exact) / np.log(max_distance / max_exact)
  large = max_exact + (log_ratio * (num_buckets - max_exact)).astype(np.int32)
  large = np.minimum(large, num_buckets - 1)
  return bucket + np.where(is_small, n, large)


class RelativePositionBias(nn.Module):
  """Per-head biases shared by every layer of a stack; shape [1, H, q, k]."""
  num_heads: int
  num_buckets: int
  max_distance: int
  bidirectional: bool
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, query_positions: jax.Array, key_length: int):
    rel_embedding = param_with_axes(
        "rel_embedding", nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
        (self.num_heads, self.num_buckets), jnp.float32,
        axes=("heads", "relpos_buckets"))
    if isinstance(query_positions, np.ndarray):
      rel = np.arange(key_length)[None, :] - query_positions[:, None]
      buckets = relative_position_bucket(rel, self.bidirectional, self.num_buckets,
                                         self.max_distance)
      bias = jnp.take(rel_embedding, jnp.asarray(buckets), axis=1)
    else:  # one decoding step: the query position is traced
      table = relative_position_bucket(
          np.arange(key_length)[None, :] - np.arange(key_length)[:, None],
          self.bidirectional, self.num_buckets, self.max_distance)
      buckets = jnp.take(jnp.asarray(table), query_positions, axis=0)
      bias = jnp.take(rel_embedding, buckets, axis=1)
    return bias[None].astype(self.dtype)


class Attention(nn.Module):
  """Multi-head dot-product attention without the 1/sqrt(d) factor (T5 folds it into init).

  In decode mode a self-attention layer keeps a fixed-size key/value cache and a
  cross-attention layer projects the encoder output once, on the first step: once per
  example, which its beams share when the queries are batch x beams rows.
  """
  num_heads: int
  head_dim: int
  dropout_rate: float
  dtype: jnp.dtype = jnp.float32

  def _project(self, name, x, init):
    heads = SplitHeads(self.num_heads, self.head_dim, init, self.dtype, name=name)(x)
    return constrain(heads, HEADS_AXES)

  @nn.compact
  def __call__(self, inputs_q, inputs_kv, biases, *, deterministic: bool,
               cache_mode: Optional[str] = None, decode_position=None,
               max_decode_length: int = 0):
    """`biases`: additive terms broadcastable to [B, H, q, k], summed into the
    logits (kept apart so that XLA fuses them into the softmax).
    `cache_mode` is None (no cache), 'self' or 'cross'."""
    embed = inputs_q.shape[-1]
    kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
    query_init = lambda *a: kernel_init(*a) / np.sqrt(self.head_dim).astype(np.float32)
    query = self._project("query", inputs_q, query_init)

    if cache_mode == "cross":
      key = self.variable("cache", "cross_key",
                          lambda: self._project("key", inputs_kv, kernel_init)).value
      value = self.variable("cache", "cross_value",
                            lambda: self._project("value", inputs_kv, kernel_init)).value
    else:
      key = self._project("key", inputs_kv, kernel_init)
      value = self._project("value", inputs_kv, kernel_init)
    if cache_mode == "self":
      shape = (key.shape[0], self.num_heads, max_decode_length, self.head_dim)
      cached_key = self.variable("cache", "cached_key", jnp.zeros, shape, key.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros, shape, value.dtype)
      start = (0, 0, decode_position, 0)
      cached_key.value = jax.lax.dynamic_update_slice(cached_key.value, key, start)
      cached_value.value = jax.lax.dynamic_update_slice(cached_value.value, value, start)
      key, value = cached_key.value, cached_value.value

    beams = query.shape[0] // key.shape[0]
    if beams > 1:
      # Beam search: the k beams of an example attend to its one copy of the encoder's
      # keys and values, as k query positions (cross-attention biases mask keys only).
      query = query.reshape(key.shape[0], beams, self.num_heads, self.head_dim)
      query = query.transpose(0, 2, 1, 3)
    logits = jnp.einsum("bhqd,bhkd->bhqk", query, key,
                        preferred_element_type=jnp.float32)
    for bias in biases:
      logits = logits + bias.astype(jnp.float32)
    # Softmax with the normalisation applied after the value matmul: dividing the
    # [B, H, q, k] weights (and, in the backward pass, broadcasting that division)
    # costs more on CPU than dividing the [B, H, q, d] output. Dropout commutes with
    # the per-row division, so it may act on the unnormalised weights.
    logits = logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    unnormalized = jnp.exp(logits)
    denominator = jnp.sum(unnormalized, axis=-1, keepdims=True)
    weights = unnormalized.astype(self.dtype)
    if not deterministic and self.dropout_rate > 0:
      weights = nn.Dropout(self.dropout_rate)(weights, deterministic=False)
    out = jnp.einsum("bhqk,bhkd->bhqd", weights, value, preferred_element_type=jnp.float32)
    out = (out / denominator).astype(self.dtype)
    if beams > 1:
      out = out.transpose(0, 2, 1, 3).reshape(-1, self.num_heads, 1, self.head_dim)
    return MergeHeads(embed, kernel_init, self.dtype, name="out")(out)


class Mlp(nn.Module):
  """ReLU (T5 1.0) or gated GELU (T5 1.1) feed-forward block."""
  d_ff: int
  activations: tuple[str, ...]
  dropout_rate: float
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
    hidden = None
    for i, act in enumerate(self.activations):
      name = "wi" if len(self.activations) == 1 else f"wi_{i}"
      h = Dense(self.d_ff, ("embed", "mlp"), kernel_init=init, dtype=self.dtype, name=name)(x)
      if act == "gelu":
        h = nn.gelu(h, approximate=True)
      elif act == "relu":
        h = nn.relu(h)
      hidden = h if hidden is None else hidden * h
    hidden = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(
        constrain(hidden, MLP_AXES), deterministic=deterministic)
    return Dense(x.shape[-1], ("mlp", "embed"), kernel_init=init, dtype=self.dtype,
                 name="wo")(hidden)
