"""Losses: t5x's cross-entropy (z-loss, label smoothing) and MPT's distillation terms.

Every loss is masked by `weights` (1 at real target tokens, 0 at padding) and
normalised by the number of real tokens unless a constant is given, so that a loss
does not change with the batch size or the amount of padding.
"""

from typing import Optional, Union

import jax
import jax.numpy as jnp

# 'tokens': mean over real target tokens; a float: sum / that constant (t5x's
# LOSS_NORMALIZING_FACTOR); None: the plain sum.
Normalizer = Union[str, float, None]


def _normalize(total, weights, normalizer: Normalizer):
  if normalizer == "tokens":
    return total / jnp.maximum(jnp.sum(weights), 1.0)
  if normalizer is None:
    return total
  if isinstance(normalizer, str):
    raise ValueError(f"loss normalizer {normalizer!r}: use 'tokens', a number, or None.")
  return total / normalizer


def token_cross_entropy(logits, targets, *, label_smoothing: float = 0.0,
                        z_loss: float = 0.0):
  """Per-token (loss, z_loss) [B, L]; the loss includes z_loss, as t5x's does.

  With label smoothing, the entropy of the smoothed target is subtracted so that a
  perfect prediction scores zero.
  """
  vocab = logits.shape[-1]
  log_z = jax.nn.logsumexp(logits, axis=-1)
  log_probs = logits - log_z[..., None]
  target_log_prob = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  if label_smoothing:
    confidence = 1.0 - label_smoothing
    low = label_smoothing / (vocab - 1)
    floor = -(confidence * jnp.log(confidence) + (vocab - 1) * low * jnp.log(low + 1e-20))
    loss = -(confidence - low) * target_log_prob - low * jnp.sum(log_probs, axis=-1) - floor
  else:
    loss = -target_log_prob
  token_z_loss = z_loss * jnp.square(log_z)
  return loss + token_z_loss, token_z_loss


def cross_entropy(logits, targets, weights, *, label_smoothing: float = 0.0,
                  z_loss: float = 0.0, normalizer: Normalizer = "tokens"):
  """(loss, z_loss) scalars, masked by `weights` and normalised."""
  loss, token_z = token_cross_entropy(logits, targets, label_smoothing=label_smoothing,
                                      z_loss=z_loss)
  weights = weights.astype(jnp.float32)
  return (_normalize(jnp.sum(loss * weights), weights, normalizer),
          _normalize(jnp.sum(token_z * weights), weights, normalizer))


def sequence_log_likelihood(logits, targets, weights):
  """Sum of target-token log-probabilities per example [B] (for scoring)."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  token = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  return jnp.sum(token * weights, axis=-1)


def distillation_kl(student_logits, teacher_logits, weights, *, temperature: float = 1.0,
                    scale_by_temperature_squared: bool = True,
                    normalizer: Normalizer = "tokens"):
  """Eq. 3: KL(p_teacher || p_student) per target token, both softened by T.

  The T² factor keeps the gradient's size independent of T (Hinton et al.); at the
  default T = 1 it changes nothing.
  """
  teacher = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature, axis=-1)
  student = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
  kl = jnp.sum(jnp.exp(teacher) * (teacher - student), axis=-1)
  if scale_by_temperature_squared:
    kl = kl * temperature ** 2
  weights = weights.astype(jnp.float32)
  return _normalize(jnp.sum(kl * weights), weights, normalizer)


def hidden_mse(student_hidden, teacher_hidden, mask, normalizer: Optional[str] = "tokens"):
  """Eq. 4: squared error of hidden states, averaged over the hidden size and over
  the positions where `mask` is 1."""
  error = jnp.mean(jnp.square(student_hidden.astype(jnp.float32) -
                              teacher_hidden.astype(jnp.float32)), axis=-1)
  mask = mask.astype(jnp.float32)
  return _normalize(jnp.sum(error * mask), mask, normalizer)
