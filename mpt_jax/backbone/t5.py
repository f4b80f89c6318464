"""The T5 encoder-decoder in flax.linen, with a hook for prompt embeddings.

The single extension to t5x's example network is `encode(..., prompt=...)`:
embeddings [B, l, d] prepended to the encoder input, with every mask grown to match.
The config's `remat_policy` and `scan_layers` choose how the layer stacks run (TPU
scale): each layer rematerialised under a jax.checkpoint policy, and the layers of a
stack one `nn.scan` over parameters stacked on a leading 'layers' axis.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flax.linen import partitioning as nn_partitioning

from mpt_jax.backbone.config import REMAT_POLICIES
from mpt_jax.backbone.config import T5Config
from mpt_jax.backbone.layers import Attention
from mpt_jax.backbone.layers import constrain
from mpt_jax.backbone.layers import Dense
from mpt_jax.backbone.layers import Embed
from mpt_jax.backbone.layers import HIDDEN_AXES
from mpt_jax.backbone.layers import key_padding_bias
from mpt_jax.backbone.layers import Mlp
from mpt_jax.backbone.layers import NEG_INF
from mpt_jax.backbone.layers import RelativePositionBias
from mpt_jax.backbone.layers import RMSNorm


def encoder_mask(encoder_input_tokens: jax.Array, prompt_length: int = 0) -> jax.Array:
  """[B, l + Le] bool: prompt positions are always real, input padding (id 0) is not."""
  mask = encoder_input_tokens > 0
  if prompt_length:
    prompt_mask = jnp.ones((mask.shape[0], prompt_length), dtype=bool)
    mask = jnp.concatenate([prompt_mask, mask], axis=1)
  return mask

def _residual_dropout(config, x, deterministic):
  return nn.Dropout(config.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)


def _pre_norm_residual(cfg: T5Config, x, norm_name: str, sublayer, deterministic: bool):
  """x + dropout(sublayer(norm(x))): T5's pre-norm residual block."""
  y = RMSNorm(cfg.layer_norm_epsilon, cfg.activation_dtype, name=norm_name)(x)
  return x + _residual_dropout(cfg, sublayer(y), deterministic)


def _mlp_residual(cfg: T5Config, x, deterministic: bool):
  mlp = Mlp(cfg.d_ff, cfg.mlp_activations, cfg.dropout_rate, cfg.activation_dtype, name="mlp")
  return _pre_norm_residual(cfg, x, "pre_mlp_layer_norm", lambda y: mlp(
      y, deterministic=deterministic), deterministic)


def _layer_output(cfg: T5Config, x):
  """A layer's output, its sharding pinned; a scanned layer returns (carry, no output)."""
  x = constrain(x, HIDDEN_AXES)
  return (x, None) if cfg.scan_layers else x


def _layer_stack(layer_cls, cfg: T5Config, num_layers: int, num_args: int,
                 static_argnums: tuple[int, ...], collections=("params",)):
  """`call(x, *args) -> x` running `num_layers` layers of `layer_cls` as the config says.

  `static_argnums` (counting `self` as 0) are the Python arguments that remat must keep
  out of its trace; None disables remat (decoding, where nothing is differentiated).
  """
  policy = REMAT_POLICIES[cfg.remat_policy]
  if cfg.remat_policy != "none" and static_argnums is not None:
    # Under scan the loop already keeps XLA from merging the recomputation away.
    layer_cls = nn.remat(layer_cls, policy=policy, prevent_cse=not cfg.scan_layers,
                         static_argnums=static_argnums)
  if cfg.scan_layers:
    scanned = nn_partitioning.scan_with_axes(
        layer_cls, variable_axes={name: 0 for name in collections},
        split_rngs={"params": True, "dropout": True}, in_axes=(nn.broadcast,) * num_args,
        length=num_layers, axis_name="layers")(cfg, name="layers")
    return lambda x, *args: scanned(x, *args)[0]
  layers = [layer_cls(cfg, name=f"layers_{i}") for i in range(num_layers)]

  def call(x, *args):
    for layer in layers:
      x = layer(x, *args)
    return x
  return call


class EncoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, x, biases, deterministic):
    cfg, dtype = self.config, self.config.activation_dtype
    attention = Attention(cfg.num_heads, cfg.d_kv, cfg.dropout_rate, dtype, name="attention")
    x = _pre_norm_residual(cfg, x, "pre_attention_layer_norm", lambda y: attention(
        y, y, biases, deterministic=deterministic), deterministic)
    return _layer_output(cfg, _mlp_residual(cfg, x, deterministic))


class DecoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, x, encoded, self_biases, cross_biases, deterministic,
               decode_position=None, max_decode_length=0):
    cfg, dtype = self.config, self.config.activation_dtype
    decoding = decode_position is not None
    attention = functools.partial(Attention, cfg.num_heads, cfg.d_kv, cfg.dropout_rate, dtype)
    self_attention = attention(name="self_attention")
    x = _pre_norm_residual(cfg, x, "pre_self_attention_layer_norm", lambda y: self_attention(
        y, y, self_biases, deterministic=deterministic,
        cache_mode="self" if decoding else None, decode_position=decode_position,
        max_decode_length=max_decode_length), deterministic)
    cross_attention = attention(name="encoder_decoder_attention")
    x = _pre_norm_residual(cfg, x, "pre_cross_attention_layer_norm", lambda y: cross_attention(
        y, encoded, cross_biases, deterministic=deterministic,
        cache_mode="cross" if decoding else None), deterministic)
    return _layer_output(cfg, _mlp_residual(cfg, x, deterministic))


class Encoder(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, embedded, mask, deterministic):
    cfg = self.config
    length = embedded.shape[1]
    relpos = RelativePositionBias(cfg.num_heads, cfg.relative_attention_num_buckets,
                                  cfg.relative_attention_max_distance, bidirectional=True,
                                  dtype=cfg.activation_dtype, name="relpos_bias")
    biases = (relpos(np.arange(length), length),
              key_padding_bias(mask, cfg.activation_dtype))
    x = constrain(_residual_dropout(cfg, embedded, deterministic), HIDDEN_AXES)
    stack = _layer_stack(EncoderLayer, cfg, cfg.num_layers, 2, static_argnums=(3,))
    x = stack(x, biases, deterministic)
    x = RMSNorm(cfg.layer_norm_epsilon, cfg.activation_dtype, name="encoder_norm")(x)
    return nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)


class Decoder(nn.Module):
  """Returns (final normalised hidden states [B, Ld, d], float32 logits [B, Ld, V])."""
  config: T5Config
  shared_embedding: Embed

  @nn.compact
  def __call__(self, embedded, encoded, cross_mask, deterministic,
               decode_position=None, max_decode_length=0):
    cfg = self.config
    relpos = RelativePositionBias(cfg.num_heads, cfg.relative_attention_num_buckets,
                                  cfg.relative_attention_max_distance, bidirectional=False,
                                  dtype=cfg.activation_dtype, name="relpos_bias")
    if decode_position is None:
      # Causality alone masks self-attention: target padding comes after every real
      # position, so no real query sees a padded key.
      length = embedded.shape[1]
      causal = np.where(np.tril(np.ones((length, length), bool)), 0.0, NEG_INF)
      self_biases = (relpos(np.arange(length), length),
                     jnp.asarray(causal[None, None], cfg.activation_dtype))
    else:
      positions = jnp.reshape(decode_position, (1,))
      visible = jnp.arange(max_decode_length) <= decode_position
      self_biases = (relpos(positions, max_decode_length),
                     jnp.where(visible, 0.0, NEG_INF).astype(cfg.activation_dtype)
                     [None, None, None, :])
    cross_biases = (key_padding_bias(cross_mask, cfg.activation_dtype),)

    y = constrain(_residual_dropout(cfg, embedded, deterministic), HIDDEN_AXES)
    decoding = decode_position is not None
    stack = _layer_stack(DecoderLayer, cfg, cfg.num_decoder_layers, 6,
                         static_argnums=None if decoding else (5, 6, 7),
                         collections=("params", "cache") if decoding else ("params",))
    y = stack(y, encoded, self_biases, cross_biases, deterministic, decode_position,
              max_decode_length)
    y = RMSNorm(cfg.layer_norm_epsilon, cfg.activation_dtype, name="decoder_norm")(y)
    hidden = _residual_dropout(cfg, y, deterministic)
    if cfg.tie_word_embeddings:
      logits = self.shared_embedding.attend(hidden) / np.sqrt(cfg.d_model)
    else:
      logits = Dense(cfg.vocab_size, ("embed", "vocab"), dtype=jnp.float32,
                     name="logits_dense")(hidden)
    return hidden, constrain(logits, ("batch", "length", "vocab"))


class T5(nn.Module):
  """T5 encoder-decoder; `encode` takes optional prompt embeddings [B, l, d]."""
  config: T5Config

  def setup(self):
    cfg = self.config
    self.token_embedder = Embed(cfg.vocab_size, cfg.d_model, cfg.activation_dtype,
                                one_hot=cfg.one_hot_embeddings)
    self.encoder = Encoder(cfg)
    self.decoder = Decoder(cfg, shared_embedding=self.token_embedder)

  def encode(self, encoder_input_tokens, prompt=None, *, enable_dropout=False):
    """Returns the encoder output [B, l + Le, d]; padding is masked, prompts never are."""
    embedded = self.token_embedder(encoder_input_tokens)
    prompt_length = 0
    if prompt is not None:
      prompt_length = prompt.shape[1]
      embedded = jnp.concatenate([prompt.astype(embedded.dtype), embedded], axis=1)
    mask = encoder_mask(encoder_input_tokens, prompt_length)
    return self.encoder(embedded, mask, deterministic=not enable_dropout)

  def decode_with_hidden(self, encoded, encoder_mask, decoder_input_tokens, *,
                         enable_dropout=False, decode_position=None, max_decode_length=0):
    """(decoder hidden states [B, Ld, d], float32 logits [B, Ld, V]).

    `encoder_mask` [B, Lenc] marks real encoder positions (see `encoder_mask()`).
    With `decode_position` the call is one cached decoding step.
    """
    embedded = self.token_embedder(decoder_input_tokens)
    return self.decoder(embedded, encoded, encoder_mask,
                        deterministic=not enable_dropout, decode_position=decode_position,
                        max_decode_length=max_decode_length)

  def decode(self, *args, **kwargs):
    """float32 logits [B, Ld, V]; arguments as `decode_with_hidden`."""
    return self.decode_with_hidden(*args, **kwargs)[1]

  def __call__(self, encoder_input_tokens, decoder_input_tokens, prompt=None, *,
               enable_dropout=False):
    encoded = self.encode(encoder_input_tokens, prompt, enable_dropout=enable_dropout)
    prompt_length = 0 if prompt is None else prompt.shape[1]
    mask = encoder_mask(encoder_input_tokens, prompt_length)
    return self.decode(encoded, mask, decoder_input_tokens, enable_dropout=enable_dropout)
