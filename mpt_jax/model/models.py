"""Model objects a trainer drives: losses, scoring and decoding over a prompted T5.

Parameters are one tree, t5x style: the backbone at the top level and the trainable
prompt under `prompt`. A train step holds the two apart and `merge`s them, so it
differentiates the prompt only and the backbone is a non-differentiated argument.
The same objects serve the built-in runtime and the t5x wrapper.
"""

import functools

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp

from mpt_jax.backbone.config import T5Config
from mpt_jax.model import decoding
from mpt_jax.model import losses
from mpt_jax.model.network import PromptedT5


def merge(trainable_params: dict, frozen_params: dict) -> dict:
  """The whole parameter tree from the trained {'prompt': ...} and the frozen rest."""
  return {**frozen_params, **trainable_params}


@gin.configurable
class PromptTuningModel:
  """Prompt tuning with t5x's cross-entropy; MPT's stages 1 and 3 and the baselines."""

  def __init__(self, config: T5Config, prompt: nn.Module, *,
               label_smoothing: float = 0.0, z_loss: float = 1e-4,
               loss_normalizer: losses.Normalizer = "tokens",
               teacher_prompt=None):
    self.config = config
    self.network = PromptedT5(config, prompt=prompt, teacher_prompt=teacher_prompt)
    self.label_smoothing = label_smoothing
    self.z_loss = z_loss
    self.loss_normalizer = loss_normalizer

  # --- parameters ---------------------------------------------------------------
  def init_variables(self, rng, batch_size: int = 1, input_length: int = 2,
                     target_length: int = 2):
    """Variables (params and params_axes) of the whole network, randomly initialised."""
    enc = jnp.ones((batch_size, input_length), jnp.int32)
    dec = jnp.ones((batch_size, target_length), jnp.int32)
    return self.network.init(rng, enc, dec, dec, jnp.zeros((batch_size,), jnp.int32))

  # --- training ------------------------------------------------------------------
  def _forward(self, params, batch, dropout_rng, *, use_teacher=False, return_hidden=False):
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else None
    return self.network.apply(
        {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
        batch["decoder_target_tokens"], batch["task_ids"],
        enable_dropout=dropout_rng is not None, use_teacher=use_teacher,
        return_hidden=return_hidden, rngs=rngs)

  def _task_loss(self, logits, batch):
    return losses.cross_entropy(
        logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"],
        label_smoothing=self.label_smoothing, z_loss=self.z_loss,
        normalizer=self.loss_normalizer)

  def loss_fn(self, params, batch, dropout_rng=None):
    """(loss, metrics); dropout is on when a `dropout_rng` is given."""
    logits = self._forward(params, batch, dropout_rng)
    loss, z_loss = self._task_loss(logits, batch)
    return loss, {"loss": loss, "z_loss": z_loss, **_token_metrics(logits, batch)}

  # --- inference -----------------------------------------------------------------
  def score_batch(self, params, batch):
    """Log-likelihood of each example's targets [B]."""
    logits = self._forward(params, batch, None)
    return losses.sequence_log_likelihood(logits, batch["decoder_target_tokens"],
                                          batch["decoder_loss_weights"])

  def predict_batch_with_aux(self, params, batch, max_decode_length: int, *,
                             decoding_config: decoding.DecodingConfig = decoding.DecodingConfig(),
                             rng=None, eos_id: int = 1):
    """(token ids [B, max_decode_length], {'scores': log-likelihood [B]}), decoded with
    the KV cache as `decoding_config` says. Each example is prompted by its own task id,
    so one batch may mix tasks."""
    net = self.network
    encoded, mask = net.apply({"params": params}, batch["encoder_input_tokens"],
                              batch["task_ids"], method=net.encode_prompted)
    # With beam search the decoder runs batch x beams rows (row b * k + j is beam j of
    # example b) over each example's one encoder output, which its beams share.
    def step(cache, tokens, position):
      variables = {"params": params, **({"cache": cache} if cache is not None else {})}
      logits, mutated = net.apply(
          variables, encoded, mask, tokens, decode_position=position,
          max_decode_length=max_decode_length, method=net.decode, mutable=["cache"])
      return logits[:, 0], mutated["cache"]

    decoded = decoding.decode(step, batch["encoder_input_tokens"].shape[0], max_decode_length,
                              decoding_config, rng=rng, eos_id=eos_id,
                              gather_cache=functools.partial(
                                  _gather_self_attention_cache,
                                  batch_axis=1 if self.config.scan_layers else 0))
    return decoded.tokens, {"scores": decoded.log_probs}

  def predict_batch(self, params, batch, max_decode_length: int, eos_id: int = 1, **kwargs):
    """Token ids [B, max_decode_length]; arguments as `predict_batch_with_aux`."""
    return self.predict_batch_with_aux(params, batch, max_decode_length, eos_id=eos_id,
                                       **kwargs)[0]


def _gather_self_attention_cache(cache, rows, batch_axis: int = 0):
  """Reorders the decoder's self-attention caches to the chosen beams. The cross-attention
  keys and values are the same for every beam of an example, so they stay in place.
  (A scanned decoder's caches hold the layer on axis 0 and the batch on axis 1.)"""
  def gather(path, x):
    cached = jax.tree_util.keystr(path[-1:]).startswith("['cached_")
    return jnp.take(x, rows, axis=batch_axis) if cached else x
  return jax.tree_util.tree_map_with_path(gather, cache)


def _token_metrics(logits, batch):
  weights = batch["decoder_loss_weights"].astype(jnp.float32)
  correct = jnp.argmax(logits, -1) == batch["decoder_target_tokens"]
  return {"token_accuracy": jnp.sum(correct * weights) / jnp.maximum(jnp.sum(weights), 1.0),
          "target_tokens": jnp.sum(weights)}


@gin.configurable
class DistillationModel(PromptTuningModel):
  """MPT's stage 2: L = L_task + λ (L_KL + L_hidden) against a frozen teacher bank.

  The teacher prompts live under `teacher_prompt`, outside the trainable tree, and
  their forward pass runs under stop_gradient in the same step.
  """

  def __init__(self, config, prompt, teacher_prompt, *, distill_weight: float = 0.9,
               temperature: float = 1.0, scale_kl_by_temperature_squared: bool = True,
               hidden_weight: float = 1.0, include_prompt_positions: bool = False,
               **kwargs):
    if teacher_prompt is None:
      raise ValueError("DistillationModel needs the teachers' prompts: set "
                       "ModelConfig.teacher_prompts (TEACHER_PROMPTS) to the teachers run's "
                       "prompts.safetensors.")
    super().__init__(config, prompt, teacher_prompt=teacher_prompt, **kwargs)
    self.distill_weight = distill_weight
    self.temperature = temperature
    self.scale_kl = scale_kl_by_temperature_squared
    self.hidden_weight = hidden_weight
    self.include_prompt_positions = include_prompt_positions

  def _encoder_positions(self, hidden, batch):
    """Positions the encoder MSE compares: real input tokens; prompt positions only
    if asked (the student's prompt differs from the teacher's by construction)."""
    mask = hidden["encoder_mask"]
    if not self.include_prompt_positions:
      prompt_length = mask.shape[1] - batch["encoder_input_tokens"].shape[1]
      mask = mask.at[:, :prompt_length].set(False)
    return mask

  def loss_fn(self, params, batch, dropout_rng=None):
    student_logits, student = self._forward(params, batch, dropout_rng, return_hidden=True)
    teacher_logits, teacher = jax.lax.stop_gradient(
        self._forward(params, batch, None, use_teacher=True, return_hidden=True))
    task_loss, z_loss = self._task_loss(student_logits, batch)
    weights = batch["decoder_loss_weights"]
    kl = losses.distillation_kl(student_logits, teacher_logits, weights,
                                temperature=self.temperature,
                                scale_by_temperature_squared=self.scale_kl,
                                normalizer=self.loss_normalizer)
    encoder_mse = losses.hidden_mse(student["encoder"], teacher["encoder"],
                                    self._encoder_positions(student, batch))
    decoder_mse = losses.hidden_mse(student["decoder"], teacher["decoder"], weights)
    hidden = encoder_mse + decoder_mse
    loss = task_loss + self.distill_weight * (kl + self.hidden_weight * hidden)
    metrics = {"loss": loss, "task_loss": task_loss, "z_loss": z_loss, "kl": kl,
               "hidden_mse": hidden, "encoder_mse": encoder_mse, "decoder_mse": decoder_mse,
               **_token_metrics(student_logits, batch)}
    return loss, metrics

