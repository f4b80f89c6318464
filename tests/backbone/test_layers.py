"""T5's building blocks against hand computations: RMSNorm, relative position buckets,
attention's key padding bias, and the two feed-forward blocks' parameters and outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpt_jax.backbone import layers

RNG = np.random.default_rng(0)


def test_rms_norm_scales_by_the_root_mean_square_in_float32():
  x = RNG.normal(size=(2, 3, 8)).astype(np.float32) * 5
  scale = RNG.normal(size=(8,)).astype(np.float32)
  out = layers.RMSNorm(epsilon=1e-3).apply({"params": {"scale": scale}}, x)
  expected = x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True) + 1e-3)
  np.testing.assert_allclose(out, expected * scale, rtol=1e-5)
  assert out.dtype == jnp.float32
  # The mean is not subtracted: a constant row becomes ones (a LayerNorm gives zeros).
  ones = layers.RMSNorm().apply({"params": {"scale": np.ones(4, np.float32)}},
                                np.full((1, 4), 3.0, np.float32))
  np.testing.assert_allclose(ones, np.ones((1, 4)), rtol=1e-5)


def test_rms_norm_starts_at_scale_one_and_casts_its_output():
  x = jnp.asarray(RNG.normal(size=(2, 8)), jnp.bfloat16)
  norm = layers.RMSNorm(dtype=jnp.bfloat16)
  variables = norm.init(jax.random.PRNGKey(0), x)
  np.testing.assert_array_equal(variables["params"]["scale"], np.ones(8))
  assert variables["params"]["scale"].dtype == jnp.float32
  assert norm.apply(variables, x).dtype == jnp.bfloat16


# key position - query position -> bucket, worked by hand from T5's formula with 32
# buckets and max distance 128. Bidirectional: 16 buckets per direction (keys after the
# query offset by 16), exact below 8, then 8 + floor(8 * log(n / 8) / log(16)), at most 15.
BIDIRECTIONAL = {0: 0, -3: 3, 3: 19, -7: 7, -8: 8, -12: 9, -16: 10, -20: 10, -100: 15,
                 -1000: 15, 20: 26, 1000: 31}
# Causal: keys after the query are bucket 0; exact below 16, then
# 16 + floor(16 * log(n / 16) / log(8)), at most 31.
CAUSAL = {0: 0, 3: 0, 1000: 0, -3: 3, -15: 15, -16: 16, -20: 17, -100: 30, -1000: 31}


@pytest.mark.parametrize("bidirectional, expected", [(True, BIDIRECTIONAL), (False, CAUSAL)])
def test_relative_position_buckets_follow_t5s_log_spaced_formula(bidirectional, expected):
  relative = np.array(list(expected))
  buckets = layers.relative_position_bucket(relative, bidirectional, num_buckets=32,
                                            max_distance=128)
  assert dict(zip(expected, buckets.tolist())) == expected


def test_relative_position_buckets_of_a_small_table():
  # 8 buckets, max distance 20: 4 per direction, exact below 2, then
  # 2 + floor(2 * log(n / 2) / log(10)): 2 up to n = 6, 3 from n = 7 (n / 2 > sqrt(10)).
  relative = np.arange(9)[None, :] - np.arange(9)[:, None]
  buckets = layers.relative_position_bucket(relative, True, num_buckets=8, max_distance=20)
  assert buckets[8].tolist() == [3, 3, 2, 2, 2, 2, 2, 1, 0]  # keys before the last query
  assert buckets[0].tolist() == [0, 5, 6, 6, 6, 6, 6, 7, 7]  # keys after the first query
  assert buckets.shape == (9, 9) and np.all(np.diag(buckets) == 0)


def _attention(kv, biases):
  module = layers.Attention(num_heads=2, head_dim=4, dropout_rate=0.0)
  query = jnp.asarray(RNG.normal(size=(1, 2, 8)), jnp.float32)
  variables = module.init(jax.random.PRNGKey(0), query, kv, biases, deterministic=True)
  return lambda kv, biases: module.apply(variables, query, kv, biases, deterministic=True)


def test_attention_with_a_key_padding_bias_ignores_padded_keys():
  real = RNG.normal(size=(1, 3, 8)).astype(np.float32)
  padded = [np.concatenate([real, RNG.normal(size=(1, 2, 8)).astype(np.float32) * s], axis=1)
            for s in (1.0, 100.0)]
  mask = np.array([[True, True, True, False, False]])
  bias = layers.key_padding_bias(mask, jnp.float32)
  np.testing.assert_array_equal(bias, np.array([0, 0, 0, -1e10, -1e10],
                                               np.float32).reshape(1, 1, 1, 5))
  apply = _attention(padded[0], [bias])
  out = apply(padded[0], [bias])
  assert out.shape == (1, 2, 8)
  np.testing.assert_allclose(out, apply(padded[1], [bias]), rtol=1e-6)
  np.testing.assert_allclose(out, apply(real, []), rtol=1e-5, atol=1e-6)
  # Without the bias the padded keys do change the output.
  assert not np.allclose(apply(padded[0], []), out, atol=1e-4)


def _numpy_gelu(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def test_a_gated_gelu_mlp_has_wi_0_and_wi_1_and_gates_gelu_by_a_linear_projection():
  x = RNG.normal(size=(2, 3, 8)).astype(np.float32)
  mlp = layers.Mlp(d_ff=16, activations=("gelu", "linear"), dropout_rate=0.0)
  params = mlp.init(jax.random.PRNGKey(0), x, deterministic=True)["params"]
  assert sorted(params) == ["wi_0", "wi_1", "wo"]
  assert params["wi_0"]["kernel"].shape == params["wi_1"]["kernel"].shape == (8, 16)
  assert params["wo"]["kernel"].shape == (16, 8)
  out = mlp.apply({"params": params}, x, deterministic=True)
  hidden = _numpy_gelu(x @ params["wi_0"]["kernel"]) * (x @ params["wi_1"]["kernel"])
  np.testing.assert_allclose(out, hidden @ params["wo"]["kernel"], rtol=1e-4, atol=1e-5)


def test_a_relu_mlp_has_a_single_wi():
  x = RNG.normal(size=(2, 3, 8)).astype(np.float32)
  mlp = layers.Mlp(d_ff=16, activations=("relu",), dropout_rate=0.0)
  params = mlp.init(jax.random.PRNGKey(0), x, deterministic=True)["params"]
  assert sorted(params) == ["wi", "wo"]
  out = mlp.apply({"params": params}, x, deterministic=True)
  expected = np.maximum(x @ params["wi"]["kernel"], 0) @ params["wo"]["kernel"]
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
