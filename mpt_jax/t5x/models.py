"""A `t5x.models.EncoderDecoderModel` over mpt_jax's prompted network and losses.

t5x's own paths assume t5x's example network (its `__call__`, `encode`, `decode`
signatures and cache layout), and its `_compute_logits` drops every feature it does
not know, `task_ids` included. This subclass routes each entry point to the mpt_jax
model object instead, so that one implementation of the method serves both runtimes.
"""

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
from t5x import metrics as t5x_metrics
from t5x import models as t5x_models

from mpt_jax.backbone import t5x_checkpoint
from mpt_jax.backbone.config import T5Config
from mpt_jax.model import models
from mpt_jax.model.decoding import DecodingConfig
from mpt_jax.runtime import setup
from mpt_jax.runtime.configs import ModelConfig
from mpt_jax.runtime.features import TaskIdFeatureConverter
from tasks import registry


@dataclasses.dataclass
class BackboneView:
  """What a prompt factory reads of a backbone: its config and token embeddings.

  Under t5x the backbone arrives later (restored from INITIAL_CHECKPOINT_PATH), so
  only the embedding table is read now, for sampled-vocabulary initialisation.
  """
  config: T5Config
  params: Mapping[str, Any]


def backbone_view(config: T5Config, checkpoint_path: Optional[str], seed: int = 0):
  if checkpoint_path:
    embedding = t5x_checkpoint.read_t5x_param(checkpoint_path, "token_embedder/embedding")
  else:  # training from scratch: sample from the random initial embeddings' law
    embedding = np.random.default_rng(seed).normal(
        size=(config.vocab_size, config.d_model)).astype(np.float32)
  return BackboneView(config, {"token_embedder": {"embedding": embedding}})


def prompt_model(*, config: T5Config, mixture_or_task_name: str, prompt: Callable,
                 initial_checkpoint_path: Optional[str] = None,
                 model_cls: Callable = models.PromptTuningModel,
                 teacher_prompts: Optional[str] = None,
                 task_modules: Sequence[str] = ()) -> models.PromptTuningModel:
  """The mpt_jax model object for a run's tasks, built as `mpt_jax.train` builds it."""
  registry.import_task_modules(task_modules)
  task_names = registry.task_names(mixture_or_task_name)
  backbone = backbone_view(config, initial_checkpoint_path)
  return setup.build_model(ModelConfig(model_cls=model_cls, teacher_prompts=teacher_prompts),
                           config, prompt(backbone, task_names), task_names)


class MptEncoderDecoderModel(t5x_models.EncoderDecoderModel):
  """t5x's model interface over `mpt_model`; every batch carries `task_ids`."""

  FEATURE_CONVERTER_CLS = TaskIdFeatureConverter

  def __init__(self, mpt_model: models.PromptTuningModel, input_vocabulary,
               output_vocabulary, optimizer_def, max_decode_length: Optional[int] = None):
    self.mpt = mpt_model
    self.max_decode_length = max_decode_length
    super().__init__(module=mpt_model.network, input_vocabulary=input_vocabulary,
                     output_vocabulary=output_vocabulary, optimizer_def=optimizer_def)

  def get_initial_variables(self, rng, input_shapes, input_types=None):
    batch = input_shapes["encoder_input_tokens"][0]
    return self.mpt.init_variables(rng, batch, input_shapes["encoder_input_tokens"][1],
                                   input_shapes["decoder_input_tokens"][1])

  def _compute_logits(self, params, batch, dropout_rng=None, mutable=False,
                      other_variables=None):
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else None
    return self.module.apply(
        {"params": params, **(other_variables or {})}, batch["encoder_input_tokens"],
        batch["decoder_input_tokens"], batch["decoder_target_tokens"], batch["task_ids"],
        enable_dropout=rngs is not None, rngs=rngs, mutable=mutable)

  def loss_fn(self, params, batch, dropout_rng):
    """mpt_jax's loss (prompt tuning, or distillation), its metrics averaged per step."""
    loss, metrics = self.mpt.loss_fn(params, batch, dropout_rng)
    return loss, {name: t5x_metrics.AveragePerStep(total=value)
                  for name, value in metrics.items()}

  def score_batch(self, params, batch, return_intermediates: bool = False):
    if return_intermediates:
      raise NotImplementedError("mpt_jax's t5x model does not return intermediates.")
    return self.mpt.score_batch(params, batch)

  def predict_batch_with_aux(self, params, batch, rng=None, decoder_params=None,
                             return_all_decodes=None, num_decodes=None,
                             prompt_with_targets=False):
    """Decoding with the KV cache (mpt_jax's decoder): greedy, or beam search with
    `num_decodes` beams and t5x's rules (`decoder_params={'alpha': ...}`, 0.6 by default).
    The scores are the predictions' log-likelihoods."""
    if return_all_decodes or prompt_with_targets:
      raise ValueError("mpt_jax's t5x model returns the best decode only, without target "
                       "prompting.")
    config = DecodingConfig(beam_size=num_decodes or 1,
                            alpha=(decoder_params or {}).get("alpha", 0.6))
    length = self.max_decode_length or batch["decoder_input_tokens"].shape[1]
    return self.mpt.predict_batch_with_aux(params, batch, length, decoding_config=config,
                                           rng=rng, eos_id=self.output_vocabulary.eos_id)
