"""The flax T5: masks, prompt positions, the KV cache, bfloat16, one-hot embeddings
and dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mpt_jax
from mpt_jax.backbone import t5
from tests.helpers import FIXTURES


def test_encoder_padding_does_not_change_real_positions(hf_t5_1_1, reference):
  enc, dec = reference["encoder_input_tokens"], reference["decoder_input_tokens"]
  padded = np.pad(enc, ((0, 0), (0, 7)))
  prompt = reference["shared_prompt"]
  np.testing.assert_allclose(hf_t5_1_1.logits(padded, dec, prompt),
                             hf_t5_1_1.logits(enc, dec, prompt), rtol=1e-5, atol=2e-5)


def test_prompt_positions_are_attended(hf_t5_1_1, reference):
  enc, dec = reference["encoder_input_tokens"], reference["decoder_input_tokens"]
  base = hf_t5_1_1.logits(enc, dec, reference["shared_prompt"])
  changed = reference["shared_prompt"].copy()
  changed[0] += 1.0
  assert np.abs(hf_t5_1_1.logits(enc, dec, changed) - base).max() > 1e-3


def test_encoder_mask_grows_with_the_prompt():
  tokens = jnp.array([[5, 6, 1, 0], [7, 1, 0, 0]])
  mask = t5.encoder_mask(tokens, prompt_length=3)
  expected = [[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0, 0]]
  np.testing.assert_array_equal(np.asarray(mask), np.array(expected, bool))


@pytest.mark.parametrize("version", ["t5_1_0", "t5_1_1"])
def test_cached_decoding_matches_the_full_decoder(version, reference):
  backbone = mpt_jax.load_backbone(FIXTURES / f"hf_{version}")
  module, params = backbone.module, {"params": backbone.params}
  enc, dec = reference["encoder_input_tokens"], reference["decoder_input_tokens"]
  prompt = jnp.asarray(reference["batch_prompts"])
  encoded = module.apply(params, enc, prompt, method=module.encode)
  mask = t5.encoder_mask(jnp.asarray(enc), prompt.shape[1])
  full = module.apply(params, encoded, mask, dec, method=module.decode)
  cache = {}
  for step in range(dec.shape[1]):
    logits, mutated = module.apply(
        {**params, "cache": cache}, encoded, mask, dec[:, step:step + 1],
        decode_position=step, max_decode_length=dec.shape[1], method=module.decode,
        mutable=["cache"])
    cache = mutated["cache"]
    np.testing.assert_allclose(logits[:, 0], full[:, step], atol=1e-5)


def test_bfloat16_activations_stay_close_to_float32(hf_t5_1_1, reference):
  bf16 = mpt_jax.Backbone(hf_t5_1_1.config.replace(dtype="bfloat16"), hf_t5_1_1.params)
  enc, dec = reference["encoder_input_tokens"], reference["decoder_input_tokens"]
  logits16, logits32 = bf16.logits(enc, dec), hf_t5_1_1.logits(enc, dec)
  assert logits16.dtype == np.float32
  difference = np.abs(logits16 - logits32).max()
  assert 1e-4 < difference < 0.05 * np.abs(logits32).max()  # bf16 really ran, and close


def test_one_hot_embedding_equals_gather(hf_t5_1_1, reference):
  one_hot = mpt_jax.Backbone(hf_t5_1_1.config.replace(one_hot_embeddings=True),
                             hf_t5_1_1.params)
  enc, dec = reference["encoder_input_tokens"], reference["decoder_input_tokens"]
  np.testing.assert_allclose(one_hot.logits(enc, dec), hf_t5_1_1.logits(enc, dec),
                             atol=1e-5)


def test_dropout_is_active_only_when_enabled(hf_t5_1_1, reference):
  module, params = hf_t5_1_1.module, {"params": hf_t5_1_1.params}
  enc, dec = reference["encoder_input_tokens"], reference["decoder_input_tokens"]
  plain = module.apply(params, enc, dec)
  rngs = {"dropout": jax.random.PRNGKey(1)}
  dropped = module.apply(params, enc, dec, enable_dropout=True, rngs=rngs)
  np.testing.assert_allclose(module.apply(params, enc, dec, rngs=rngs), plain)
  assert np.abs(dropped - plain).max() > 1e-3
