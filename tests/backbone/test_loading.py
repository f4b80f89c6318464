"""The loaded backbone: logits' input checks, the fingerprint, load_backbone's errors and
config check, and deterministic random backbones."""

import copy
import json

import numpy as np
import pytest

import mpt_jax

SIZES = dict(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_heads=2, num_layers=1,
             num_decoder_layers=1, dropout_rate=0.0)
CONFIG = mpt_jax.named_config("t5_1_1_tiny", **SIZES)
ENC = np.array([[5, 6, 7, 1], [8, 9, 1, 0]], np.int32)
DEC = np.array([[0, 3, 4], [0, 5, 0]], np.int32)


@pytest.fixture(scope="module")
def backbone():
  return mpt_jax.random_backbone(CONFIG, seed=0)


@pytest.mark.parametrize("enc, dec, message", [
    (ENC[0], DEC, r"encoder_input_tokens must be integer token ids \[batch, length\], got "
                  r"shape \(4,\) dtype int32"),
    (ENC, DEC[None], r"decoder_input_tokens must be integer .* shape \(1, 2, 3\)"),
    (ENC, DEC.astype(np.float32), r"decoder_input_tokens must be integer .* dtype float32"),
    (ENC, DEC[:1], "encoder_input_tokens has batch 2 but decoder_input_tokens has batch 1"),
    (np.where(ENC == 7, 64, ENC), DEC, r"encoder_input_tokens has ids outside \[0, 64\)"),
    (ENC, DEC - 1, r"decoder_input_tokens has ids outside \[0, 64\)"),
])
def test_logits_refuse_malformed_token_ids(backbone, enc, dec, message):
  with pytest.raises(ValueError, match=message):
    backbone.logits(enc, dec)


@pytest.mark.parametrize("shape", [(3, 17), (3, 3, 16), (1, 3, 16), (2, 3, 8), (16,)])
def test_logits_refuse_a_prompt_of_the_wrong_shape(backbone, shape):
  expected = rf"prompt has shape \({', '.join(map(str, shape))},?\); expected \[l, 16\] or " \
             r"\[2, l, 16\] \(batch 2, d_model 16\)"
  with pytest.raises(ValueError, match=expected):
    backbone.logits(ENC, DEC, np.zeros(shape, np.float32))


def test_a_shared_prompt_is_used_for_every_example_of_the_batch(backbone):
  prompt = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
  shared = backbone.logits(ENC, DEC, prompt)
  batched = backbone.logits(ENC, DEC, np.stack([prompt, prompt]))
  assert shared.shape == (2, 3, 64) and shared.dtype == np.float32
  np.testing.assert_allclose(shared, batched, rtol=1e-6, atol=1e-6)
  # ... and the prompt reaches the network.
  assert not np.allclose(shared, backbone.logits(ENC, DEC, prompt + 1.0))
  assert not np.allclose(shared, backbone.logits(ENC, DEC))


def test_the_fingerprint_changes_with_any_one_parameter_value(backbone):
  changed = copy.deepcopy(backbone.params)
  changed["encoder"]["layers_0"]["mlp"]["wo"]["kernel"][3, 2] += 1e-3
  other = mpt_jax.Backbone(CONFIG, changed)
  assert len(backbone.fingerprint) == 16
  assert other.fingerprint != backbone.fingerprint
  assert mpt_jax.Backbone(CONFIG, copy.deepcopy(backbone.params)).fingerprint == \
      backbone.fingerprint


def test_the_fingerprint_survives_saving_and_loading_again(backbone, tmp_path):
  loaded = mpt_jax.load_backbone(backbone.save(tmp_path / "saved"))
  assert loaded.fingerprint == backbone.fingerprint
  assert loaded.source == str(tmp_path / "saved")
  assert loaded.config == CONFIG


def test_a_missing_path_is_not_found(tmp_path):
  with pytest.raises(FileNotFoundError, match=f"Backbone path {tmp_path}/nowhere does not"):
    mpt_jax.load_backbone(tmp_path / "nowhere")


def test_a_directory_that_is_neither_hf_nor_t5x_is_refused(tmp_path):
  (tmp_path / "model.safetensors").write_bytes(b"")
  (tmp_path / "checkpoint_3").mkdir()
  with pytest.raises(ValueError, match=rf"{tmp_path} is neither a HuggingFace T5 directory "
                                       r"\(config.json \+ model.safetensors\) nor a T5X"):
    mpt_jax.load_backbone(tmp_path)


def test_an_explicit_config_must_agree_with_config_json(backbone, tmp_path):
  directory = backbone.save(tmp_path / "saved")
  with pytest.raises(ValueError, match="config.json describes .* not the given"):
    mpt_jax.load_backbone(directory, config=CONFIG.replace(d_ff=64))
  with pytest.raises(ValueError, match="config.json describes .* not the given"):
    mpt_jax.load_backbone(directory, config="t5_1_1_tiny")  # a name, other sizes
  # Only the dropout rate may differ; the given config is then the one used.
  loaded = mpt_jax.load_backbone(directory, config=CONFIG.replace(dropout_rate=0.3))
  assert loaded.config == CONFIG.replace(dropout_rate=0.3)
  assert json.loads((directory / "config.json").read_text())["dropout_rate"] == 0.0


def test_a_random_backbone_is_determined_by_its_seed(backbone):
  again = mpt_jax.random_backbone(CONFIG, seed=0)
  other = mpt_jax.random_backbone(CONFIG, seed=1)
  assert again.fingerprint == backbone.fingerprint
  assert other.fingerprint != backbone.fingerprint
  np.testing.assert_array_equal(again.params["token_embedder"]["embedding"],
                                backbone.params["token_embedder"]["embedding"])
  assert not np.array_equal(other.params["token_embedder"]["embedding"],
                            backbone.params["token_embedder"]["embedding"])
  assert (backbone.source, other.source) == ("random:0", "random:1")

