"""The losses against numpy: cross-entropy, distillation KL, hidden MSE, log-likelihood."""

import numpy as np
import pytest

from mpt_jax.model import losses

VOCAB = 7


def _log_softmax(x):
  x = np.asarray(x, np.float64)
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _logsumexp(x):
  x = np.asarray(x, np.float64)
  top = x.max(-1, keepdims=True)
  return (top + np.log(np.exp(x - top).sum(-1, keepdims=True)))[..., 0]


def _case(seed=0):
  """Random logits [2, 4, V], targets, and weights with padding (5 real tokens)."""
  rng = np.random.default_rng(seed)
  logits = rng.normal(scale=3.0, size=(2, 4, VOCAB)).astype(np.float32)
  targets = rng.integers(1, VOCAB, size=(2, 4)).astype(np.int32)
  weights = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.int32)
  return logits, targets, weights


def _token_nll(logits, targets):
  return -np.take_along_axis(_log_softmax(logits), targets[..., None], -1)[..., 0]


def test_the_cross_entropy_is_the_mean_nll_over_real_tokens_plus_the_z_loss():
  logits, targets, weights = _case()
  loss, z_loss = losses.cross_entropy(logits, targets, weights, z_loss=1e-2)
  z = 1e-2 * _logsumexp(logits) ** 2
  expected_z = (z * weights).sum() / weights.sum()
  expected = ((_token_nll(logits, targets) + z) * weights).sum() / weights.sum()
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  np.testing.assert_allclose(float(z_loss), expected_z, rtol=1e-5)
  # Padding does not count: changing padded positions' logits leaves the loss alone.
  changed = logits.copy()
  changed[weights == 0] += 50.0
  np.testing.assert_allclose(float(losses.cross_entropy(changed, targets, weights,
                                                        z_loss=1e-2)[0]), expected, rtol=1e-5)


def test_the_cross_entropy_without_z_loss_reports_a_zero_z_loss():
  logits, targets, weights = _case(1)
  loss, z_loss = losses.cross_entropy(logits, targets, weights)
  expected = (_token_nll(logits, targets) * weights).sum() / weights.sum()
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  assert float(z_loss) == 0.0


def test_label_smoothing_is_the_kl_to_the_smoothed_target():
  logits, targets, weights = _case(2)
  smoothing = 0.2
  soft = np.full(logits.shape, smoothing / (VOCAB - 1))
  np.put_along_axis(soft, targets[..., None], 1.0 - smoothing, -1)
  token = (soft * (np.log(soft) - _log_softmax(logits))).sum(-1)
  expected = (token * weights).sum() / weights.sum()
  loss, _ = losses.cross_entropy(logits, targets, weights, label_smoothing=smoothing)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_a_perfect_prediction_of_the_smoothed_target_scores_about_zero():
  _, targets, weights = _case(3)
  smoothing = 0.1
  soft = np.full(targets.shape + (VOCAB,), smoothing / (VOCAB - 1))
  np.put_along_axis(soft, targets[..., None], 1.0 - smoothing, -1)
  loss, _ = losses.cross_entropy(np.log(soft).astype(np.float32), targets, weights,
                                 label_smoothing=smoothing)
  assert float(loss) == pytest.approx(0.0, abs=1e-5)
  # Without smoothing the same prediction costs -log(0.9) per token.
  plain, _ = losses.cross_entropy(np.log(soft).astype(np.float32), targets, weights)
  assert float(plain) == pytest.approx(-np.log(0.9), rel=1e-5)


def test_the_normalizers_divide_the_masked_sum_by_tokens_a_constant_or_nothing():
  logits, targets, weights = _case(4)
  total = (_token_nll(logits, targets) * weights).sum()
  by_tokens, _ = losses.cross_entropy(logits, targets, weights, normalizer="tokens")
  by_constant, _ = losses.cross_entropy(logits, targets, weights, normalizer=4.0)
  summed, _ = losses.cross_entropy(logits, targets, weights, normalizer=None)
  np.testing.assert_allclose(float(by_tokens), total / 5, rtol=1e-5)
  np.testing.assert_allclose(float(by_constant), total / 4, rtol=1e-5)
  np.testing.assert_allclose(float(summed), total, rtol=1e-5)


def test_a_batch_of_padding_only_gives_a_zero_loss_not_nan():
  logits, targets, weights = _case(5)
  loss, _ = losses.cross_entropy(logits, targets, np.zeros_like(weights))
  assert float(loss) == 0.0


def test_an_unknown_normalizer_string_is_refused():
  logits, targets, weights = _case(6)
  with pytest.raises(ValueError, match="loss normalizer 'batch': use 'tokens', a number"):
    losses.cross_entropy(logits, targets, weights, normalizer="batch")
  with pytest.raises(ValueError, match="loss normalizer 'sum'"):
    losses.distillation_kl(logits, logits, weights, normalizer="sum")


def test_the_distillation_kl_of_identical_logits_is_zero():
  logits, _, weights = _case(7)
  assert float(losses.distillation_kl(logits, logits, weights,
                                      temperature=3.0)) == pytest.approx(0.0, abs=1e-6)


def test_the_distillation_kl_is_kl_teacher_to_student_softened_and_scaled_by_t_squared():
  student, _, weights = _case(8)
  teacher, _, _ = _case(9)
  temperature = 2.0
  log_t, log_s = _log_softmax(teacher / temperature), _log_softmax(student / temperature)
  token = (np.exp(log_t) * (log_t - log_s)).sum(-1)
  plain = (token * weights).sum() / weights.sum()
  kl = losses.distillation_kl(student, teacher, weights, temperature=temperature)
  np.testing.assert_allclose(float(kl), temperature ** 2 * plain, rtol=1e-5)
  unscaled = losses.distillation_kl(student, teacher, weights, temperature=temperature,
                                    scale_by_temperature_squared=False)
  np.testing.assert_allclose(float(unscaled), plain, rtol=1e-5)
  # The direction matters: KL(student || teacher) is a different number.
  swapped = losses.distillation_kl(teacher, student, weights, temperature=temperature)
  assert abs(float(swapped) - float(kl)) > 1e-3
  summed = losses.distillation_kl(student, teacher, weights, temperature=temperature,
                                  normalizer=None)
  np.testing.assert_allclose(float(summed), temperature ** 2 * (token * weights).sum(),
                             rtol=1e-5)


def test_the_hidden_mse_averages_over_the_hidden_size_and_the_masked_positions():
  rng = np.random.default_rng(10)
  student = rng.normal(size=(2, 3, 5)).astype(np.float32)
  teacher = rng.normal(size=(2, 3, 5)).astype(np.float32)
  mask = np.array([[1, 1, 0], [1, 0, 0]], bool)
  teacher[~mask] += 1e3  # errors at masked-out positions must not count
  error = ((student - teacher) ** 2).mean(-1)
  expected = (error * mask).sum() / mask.sum()
  np.testing.assert_allclose(float(losses.hidden_mse(student, teacher, mask)), expected,
                             rtol=1e-5)
  np.testing.assert_allclose(float(losses.hidden_mse(student, teacher, mask, None)),
                             (error * mask).sum(), rtol=1e-5)


def test_the_sequence_log_likelihood_sums_each_examples_real_target_log_probs():
  logits, targets, weights = _case(11)
  expected = (-_token_nll(logits, targets) * weights).sum(-1)
  scores = np.asarray(losses.sequence_log_likelihood(logits, targets, weights))
  assert scores.shape == (2,)
  np.testing.assert_allclose(scores, expected, rtol=1e-5)
