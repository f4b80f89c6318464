"""The model objects: MPT's distillation loss (Eq. 3-5) against a direct computation,
and where its gradients go."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpt_jax.model import models
from mpt_jax.prompts import initializers
from mpt_jax.prompts import modules as prompts
from tests import helpers

NUM_TASKS, LENGTH = 3, 4


def _distillation(backbone, student=None, **kwargs):
  d = backbone.config.d_model
  random = jax.nn.initializers.normal(1.0)
  student = student or prompts.DecomposedPrompt(NUM_TASKS, LENGTH, d, rank=2,
                                                shared_init=random, cols_init=random,
                                                rows_init=random)
  teacher = prompts.PromptBank(NUM_TASKS, LENGTH, d, initializer=random)
  model = models.DistillationModel(backbone.config, student, teacher, **kwargs)
  ids = jnp.zeros((1,), jnp.int32)
  params = {**backbone.params,
            "prompt": student.init(jax.random.PRNGKey(1), ids)["params"],
            "teacher_prompt": teacher.init(jax.random.PRNGKey(2), ids)["params"]}
  return model, params


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_distillation_loss_matches_eq_3_to_5(hf_t5_1_1, reference):
  model, params = _distillation(hf_t5_1_1, temperature=2.0, z_loss=0.0)
  batch = helpers.toy_batch(reference)
  _, metrics = model.loss_fn(params, batch)

  def outputs(use_teacher):
    logits, hidden = model.network.apply(
        {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
        None, batch["task_ids"], use_teacher=use_teacher, return_hidden=True)
    return np.asarray(logits, np.float64), jax.tree.map(np.asarray, hidden)

  (s_logits, s_hidden), (t_logits, t_hidden) = outputs(False), outputs(True)
  targets, weights = batch["decoder_target_tokens"], batch["decoder_loss_weights"]
  tokens = weights.sum()
  log_p = _log_softmax(s_logits)
  task_loss = -(np.take_along_axis(log_p, targets[..., None], -1)[..., 0] * weights).sum()
  task_loss /= tokens
  t_soft, s_soft = _log_softmax(t_logits / 2.0), _log_softmax(s_logits / 2.0)
  kl = 4.0 * ((np.exp(t_soft) * (t_soft - s_soft)).sum(-1) * weights).sum() / tokens
  real = batch["encoder_input_tokens"] > 0  # the input tokens, not the prompt positions
  enc_error = ((s_hidden["encoder"][:, LENGTH:] - t_hidden["encoder"][:, LENGTH:]) ** 2)
  encoder_mse = (enc_error.mean(-1) * real).sum() / real.sum()
  dec_error = ((s_hidden["decoder"] - t_hidden["decoder"]) ** 2).mean(-1)
  decoder_mse = (dec_error * weights).sum() / tokens
  total = task_loss + 0.9 * (kl + encoder_mse + decoder_mse)
  for name, expected in [("task_loss", task_loss), ("kl", kl), ("encoder_mse", encoder_mse),
                         ("decoder_mse", decoder_mse), ("loss", total)]:
    np.testing.assert_allclose(float(metrics[name]), expected, rtol=2e-4, err_msg=name)
  assert kl > 0 and encoder_mse > 0 and decoder_mse > 0


def test_a_teachers_kl_and_hidden_error_to_itself_are_zero(hf_t5_1_1, reference):
  bank = np.random.default_rng(0).normal(size=(NUM_TASKS, LENGTH, hf_t5_1_1.config.d_model))
  same = prompts.PromptBank(NUM_TASKS, LENGTH, hf_t5_1_1.config.d_model,
                            bank_init=initializers.from_array(bank))
  model, params = _distillation(hf_t5_1_1, student=same)
  params["teacher_prompt"] = params["prompt"]
  _, metrics = model.loss_fn(params, helpers.toy_batch(reference))
  assert float(metrics["kl"]) == pytest.approx(0.0, abs=1e-6)
  assert float(metrics["hidden_mse"]) == pytest.approx(0.0, abs=1e-10)
  np.testing.assert_allclose(float(metrics["loss"]), float(metrics["task_loss"]), rtol=1e-6)


def test_gradients_reach_p_u_v_and_never_the_teacher(hf_t5_1_1, reference):
  model, params = _distillation(hf_t5_1_1)
  batch = helpers.toy_batch(reference)
  grads = jax.grad(lambda p: model.loss_fn(p, batch)[0])(params)
  for name in (prompts.SHARED, prompts.TASK_COLS, prompts.TASK_ROWS):
    assert float(jnp.abs(grads["prompt"][name]).max()) > 0, name
  # The teacher runs under stop_gradient: nothing flows back to it.
  assert float(jnp.abs(grads["teacher_prompt"]["prompts"]).max()) == 0.0


def test_distillation_needs_teacher_prompts(hf_t5_1_1):
  student = prompts.DecomposedPrompt(NUM_TASKS, LENGTH, hf_t5_1_1.config.d_model)
  with pytest.raises(ValueError, match="DistillationModel needs the teachers' prompts"):
    models.DistillationModel(hf_t5_1_1.config, student, None)
