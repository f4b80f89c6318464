"""Reading T5X checkpoints, legacy (msgpack + zarr) and orbax, written as t5x writes them."""

import json

import jax
import numpy as np
import pytest

import mpt_jax
from mpt_jax.backbone import t5x_checkpoint
from tests import helpers

WRITERS = {"legacy": helpers.write_legacy,
           "orbax": lambda path, params, step: t5x_checkpoint.write_t5x_checkpoint(params, path,
                                                                                  step)}


@pytest.fixture(scope="module")
def backbone():
  return mpt_jax.random_backbone(mpt_jax.named_config(
      "t5_1_1_tiny", vocab_size=96, num_decoder_layers=3, d_kv=8), seed=3)


def _assert_same_params(loaded, expected):
  jax.tree.map(np.testing.assert_array_equal, loaded, expected)


@pytest.mark.parametrize("writer", ["legacy", "orbax"])
def test_reads_parameters_and_infers_config(tmp_path, backbone, writer):
  params = {**backbone.params, "prompt": {"prompts": np.ones((2, 3, 64), np.float32)}}
  WRITERS[writer](tmp_path, params, step=10)
  WRITERS[writer](tmp_path, backbone.params, step=20)
  latest = mpt_jax.load_backbone(tmp_path)  # the latest step of a model dir
  assert latest.source == str(tmp_path)
  _assert_same_params(latest.params, backbone.params)
  assert latest.config == backbone.config
  # A prompted model's checkpoint: the prompt sub-tree is not part of the backbone.
  earlier = mpt_jax.load_backbone(tmp_path / "checkpoint_10")
  _assert_same_params(earlier.params, backbone.params)
  tokens = np.array([[4, 5, 6, 1]])
  np.testing.assert_array_equal(earlier.logits(tokens, tokens),
                                backbone.logits(tokens, tokens))


def test_legacy_layout_matches_t5x(tmp_path, backbone):
  directory = helpers.write_legacy(tmp_path, backbone.params, step=5)
  names = {p.name for p in directory.iterdir()}
  assert "checkpoint" in names
  assert "target.encoder.layers_0.attention.query.kernel" in names
  assert "state.param_states.token_embedder.embedding.v" in names
  zarray = (directory / "target.token_embedder.embedding" / ".zarray").read_text()
  assert '"compressor":{"id":"gzip","level":1}' in zarray.replace(" ", "")


def test_save_t5x_writes_t5xs_orbax_layout_and_reads_back(tmp_path, backbone):
  directory = backbone.save_t5x(tmp_path / "tiny", step=5)
  assert directory == tmp_path / "tiny" / "checkpoint_5"
  assert (directory / "state" / "manifest.ocdbt").is_file()
  assert (directory / "_CHECKPOINT_METADATA").is_file()
  loaded = mpt_jax.load_backbone(directory)
  assert loaded.config == backbone.config
  assert all(name.startswith(("encoder/", "decoder/", "token_embedder/"))
             for name in t5x_checkpoint.read_t5x_params(directory))
  np.testing.assert_array_equal(loaded.params["token_embedder"]["embedding"],
                                backbone.params["token_embedder"]["embedding"])


def test_explicit_config_overrides_inference(tmp_path, backbone):
  helpers.write_legacy(tmp_path, backbone.params, step=1)
  config = backbone.config.replace(relative_attention_max_distance=64)
  assert mpt_jax.load_backbone(tmp_path, config=config).config == config


def test_shape_mismatch_names_every_offending_parameter(tmp_path, backbone):
  backbone.save_t5x(tmp_path, step=1)
  wrong = backbone.config.replace(d_ff=256)
  with pytest.raises(ValueError) as error:
    mpt_jax.load_backbone(tmp_path, config=wrong)
  message = str(error.value)
  assert "does not match the backbone config" in message
  assert "encoder/layers_0/mlp/wi_0/kernel: checkpoint has (64, 128), the config needs " \
         "(64, 256)" in message


def test_missing_paths_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    mpt_jax.load_backbone(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="neither a HuggingFace T5 directory"):
    mpt_jax.load_backbone(tmp_path / "empty")
  (tmp_path / "hf").mkdir()
  (tmp_path / "hf" / "config.json").write_text('{"model_type": "t5", "d_model": 8}')
  with pytest.raises(ValueError, match=r"Not a T5 config.json.*missing \['vocab_size', 'd_kv'"):
    mpt_jax.load_backbone(tmp_path / "hf")
  config = mpt_jax.named_config("t5_1_0_tiny", vocab_size=32).to_hf_dict()
  (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
  with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
    mpt_jax.load_backbone(tmp_path / "hf")


@pytest.mark.parametrize("writer", ["legacy", "orbax"])
def test_reads_one_parameter_alone(tmp_path, backbone, writer):
  WRITERS[writer](tmp_path, backbone.params, step=3)
  embedding = t5x_checkpoint.read_t5x_param(tmp_path, "token_embedder/embedding")
  np.testing.assert_array_equal(embedding, backbone.params["token_embedder"]["embedding"])
