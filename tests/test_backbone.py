"""The backbone against HuggingFace transformers, its named sizes, masks and KV cache."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mpt_jax
from mpt_jax import backbone as backbone_lib
from mpt_jax.io import backbone_params
from tests.conftest import FIXTURES


@pytest.mark.parametrize("version", ["t5_1_0", "t5_1_1"])
@pytest.mark.parametrize("prompt", [None, "shared_prompt", "batch_prompts"])
def test_logits_match_transformers(reference, version, prompt):
  backbone = mpt_jax.load_backbone(FIXTURES / f"hf_{version}")
  prompt_value = None if prompt is None else reference[prompt]
  logits = backbone.logits(reference["encoder_input_tokens"],
                           reference["decoder_input_tokens"], prompt_value)
  suffix = {None: "logits", "shared_prompt": "logits_shared_prompt",
            "batch_prompts": "logits_batch_prompts"}[prompt]
  expected = reference[f"{version}/{suffix}"]
  assert logits.dtype == np.float32 and logits.shape == expected.shape
  np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_configs_read_from_hf():
  v10 = mpt_jax.load_backbone(FIXTURES / "hf_t5_1_0").config
  v11 = mpt_jax.load_backbone(FIXTURES / "hf_t5_1_1").config
  assert (v10.feed_forward_proj, v10.tie_word_embeddings) == ("relu", True)
  assert (v11.feed_forward_proj, v11.tie_word_embeddings) == ("gated-gelu", False)
  # The fixtures make every independent size differ from its usual tie.
  assert v11.num_decoder_layers != v11.num_layers
  assert v11.d_kv * v11.num_heads != v11.d_model
  assert v11.relative_attention_max_distance == 20


# Parameter counts HuggingFace reports for the published checkpoints.
@pytest.mark.parametrize("name,count", [
    ("t5_1_0_small", 60_506_624), ("t5_1_0_base", 222_903_552),
    ("t5_1_1_small", 76_961_152), ("t5_1_1_base", 247_577_856),
    ("t5_1_1_large", 783_150_080),
])
def test_named_sizes_match_published_parameter_counts(name, count):
  shapes = backbone_params.expected_shapes(mpt_jax.named_config(name))
  assert sum(int(np.prod(s)) for s in shapes.values()) == count


def test_every_named_config_builds():
  for version in ("t5_1_0", "t5_1_1"):
    for size in ("tiny", "small", "base", "large", "xl", "xxl"):
      shapes = backbone_params.expected_shapes(mpt_jax.named_config(f"{version}_{size}"))
      assert ("decoder/logits_dense/kernel" in shapes) == (version == "t5_1_1")
  with pytest.raises(ValueError, match="Unknown backbone config 't5_1_1_huge'"):
    mpt_jax.named_config("t5_1_1_huge")


def test_parameter_names_and_axes_follow_t5x():
  config = mpt_jax.named_config("t5_1_1_tiny", vocab_size=64)
  tokens = jnp.ones((1, 3), jnp.int32)
  variables = backbone_lib.T5(config).init(jax.random.PRNGKey(0), tokens, tokens)
  axes = jax.tree.map(lambda a: a.names, variables["params_axes"],
                      is_leaf=lambda x: hasattr(x, "names"))
  assert axes["token_embedder"]["embedding_axes"] == ("vocab", "embed")
  layer = axes["encoder"]["layers_0"]
  assert layer["attention"]["query"]["kernel_axes"] == ("embed", "joined_kv")
  assert layer["attention"]["out"]["kernel_axes"] == ("joined_kv", "embed")
  assert layer["mlp"]["wi_0"]["kernel_axes"] == ("embed", "mlp")
  assert axes["encoder"]["relpos_bias"]["rel_embedding_axes"] == ("heads", "relpos_buckets")
  assert axes["decoder"]["logits_dense"]["kernel_axes"] == ("embed", "vocab")
  assert "encoder_decoder_attention" in variables["params"]["decoder"]["layers_0"]


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
  mask = backbone_lib.encoder_mask(tokens, prompt_length=3)
  expected = [[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0, 0]]
  np.testing.assert_array_equal(np.asarray(mask), np.array(expected, bool))


@pytest.mark.parametrize("version", ["t5_1_0", "t5_1_1"])
def test_cached_decoding_matches_the_full_decoder(version, reference):
  backbone = mpt_jax.load_backbone(FIXTURES / f"hf_{version}")
  module, params = backbone.module, {"params": backbone.params}
  enc, dec = reference["encoder_input_tokens"], reference["decoder_input_tokens"]
  prompt = jnp.asarray(reference["batch_prompts"])
  encoded = module.apply(params, enc, prompt, method=module.encode)
  mask = backbone_lib.encoder_mask(jnp.asarray(enc), prompt.shape[1])
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
