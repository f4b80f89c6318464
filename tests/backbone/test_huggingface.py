"""HuggingFace T5 directories: read to the same logits as transformers, configs read
one to one, written back unchanged, and malformed directories refused by name."""

import json

from flax import traverse_util
import numpy as np
import pytest
import safetensors.numpy

import mpt_jax
from mpt_jax.backbone import huggingface
from tests.helpers import FIXTURES


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


@pytest.fixture(scope="module")
def tiny_backbones():
  """{version: the tiny random fixture backbone}, loaded on first use."""
  loaded = {}
  def get(version):
    if version not in loaded:
      loaded[version] = mpt_jax.load_backbone(FIXTURES / f"hf_{version}")
    return loaded[version]
  return get


@pytest.fixture(params=["t5_1_0", "t5_1_1"])
def tiny(request, tiny_backbones):
  return tiny_backbones(request.param)


@pytest.fixture
def v11(tiny_backbones):
  return tiny_backbones("t5_1_1")


def _tensors(directory):
  return safetensors.numpy.load_file(str(directory / "model.safetensors"))


def _save_tensors(directory, tensors):
  safetensors.numpy.save_file(tensors, str(directory / "model.safetensors"),
                              metadata={"format": "pt"})


def test_write_then_read_gives_back_the_same_config_and_parameters(tiny, tmp_path):
  directory = huggingface.write_hf_t5(tiny.config, tiny.params, tmp_path / "hf")
  config, params = huggingface.read_hf_t5(directory)
  assert config == tiny.config
  flat = traverse_util.flatten_dict(params, sep="/")
  expected = traverse_util.flatten_dict(tiny.params, sep="/")
  assert sorted(flat) == sorted(expected)
  for name, value in expected.items():
    np.testing.assert_array_equal(flat[name], value, err_msg=name)


def test_written_tensors_use_huggingfaces_names_and_layouts(tiny, tmp_path):
  directory = huggingface.write_hf_t5(tiny.config, tiny.params, tmp_path / "hf")
  tensors = _tensors(directory)
  layer = tiny.params["encoder"]["layers_0"]
  np.testing.assert_array_equal(tensors["encoder.block.0.layer.0.SelfAttention.q.weight"],
                                layer["attention"]["query"]["kernel"].T)
  np.testing.assert_array_equal(tensors["encoder.block.0.layer.1.layer_norm.weight"],
                                layer["pre_mlp_layer_norm"]["scale"])
  np.testing.assert_array_equal(
      tensors["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"],
      tiny.params["decoder"]["relpos_bias"]["rel_embedding"].T)
  mlp = "wi_0" if tiny.config.feed_forward_proj == "gated-gelu" else "wi"
  assert f"decoder.block.0.layer.2.DenseReluDense.{mlp}.weight" in tensors
  assert ("lm_head.weight" in tensors) == (not tiny.config.tie_word_embeddings)


def test_a_missing_config_json_is_an_error_naming_it(v11, tmp_path):
  directory = huggingface.write_hf_t5(v11.config, v11.params, tmp_path / "hf")
  (directory / "config.json").unlink()
  with pytest.raises(FileNotFoundError, match=f"{directory}/config.json not found"):
    huggingface.read_hf_t5(directory)


def test_missing_weights_are_an_error_naming_the_file(v11, tmp_path):
  directory = huggingface.write_hf_t5(v11.config, v11.params, tmp_path / "hf")
  (directory / "model.safetensors").unlink()
  with pytest.raises(FileNotFoundError, match=r"has no model.safetensors or "
                                              r"model.safetensors.index.json"):
    huggingface.read_hf_t5(directory)
  index = {"weight_map": {"shared.weight": "model-00001-of-00002.safetensors",
                          "lm_head.weight": "model-00002-of-00002.safetensors"}}
  (directory / "model.safetensors.index.json").write_text(json.dumps(index))
  _save_tensors(directory, {"shared.weight": np.zeros((128, 32), np.float32)})
  (directory / "model.safetensors").rename(directory / "model-00001-of-00002.safetensors")
  with pytest.raises(FileNotFoundError, match=f"{directory}/model-00002-of-00002.safetensors "
                                              "is listed in the shard index but missing"):
    huggingface.read_hf_t5(directory)


@pytest.mark.parametrize("name", [
    "encoder.embed_positions.weight",
    "encoder.block.0.layer.0.SelfAttention.qkv.weight",
    "decoder.block.0.layer.3.DenseReluDense.wo.weight",
])
def test_an_unknown_tensor_is_refused_by_name(v11, tmp_path, name):
  directory = huggingface.write_hf_t5(v11.config, v11.params, tmp_path / "hf")
  _save_tensors(directory, {**_tensors(directory), name: np.zeros((2, 2), np.float32)})
  with pytest.raises(ValueError, match=f"Unrecognised HuggingFace T5 tensor '{name}'"):
    huggingface.read_hf_t5(directory)


def test_an_unknown_mlp_projection_is_refused_as_unexpected(v11, tmp_path):
  directory = huggingface.write_hf_t5(v11.config, v11.params, tmp_path / "hf")
  extra = "encoder.block.1.layer.1.DenseReluDense.wi_9.weight"
  _save_tensors(directory, {**_tensors(directory), extra: np.zeros((48, 32), np.float32)})
  with pytest.raises(ValueError, match="unexpected encoder/layers_1/mlp/wi_9/kernel"):
    huggingface.read_hf_t5(directory)


@pytest.mark.parametrize("name", ["encoder/layers_0/adapter/kernel", "prompt/prompts",
                                  "prompt/embedding/kernel"])
def test_a_parameter_without_a_huggingface_name_is_refused_by_name(v11, tmp_path, name):
  params = {**traverse_util.flatten_dict(v11.params, sep="/"),
            name: np.zeros((2, 2), np.float32)}
  with pytest.raises(ValueError, match=f"Parameter '{name}' has no HuggingFace T5 name"):
    huggingface.write_hf_t5(v11.config, traverse_util.unflatten_dict(params, sep="/"),
                            tmp_path / "hf")


def test_a_t5_1_0_file_that_also_stores_the_tied_head_reads_without_it(tiny_backbones,
                                                                       tmp_path):
  tiny = tiny_backbones("t5_1_0")
  directory = huggingface.write_hf_t5(tiny.config, tiny.params, tmp_path / "hf")
  tensors = _tensors(directory)
  _save_tensors(directory, {**tensors, "lm_head.weight": tensors["shared.weight"] * 2})
  config, params = huggingface.read_hf_t5(directory)
  assert config.tie_word_embeddings
  assert "logits_dense" not in params["decoder"]


def test_a_t5_1_1_file_without_lm_head_ties_the_head_to_the_embedding(v11, tmp_path):
  directory = huggingface.write_hf_t5(v11.config, v11.params, tmp_path / "hf")
  tensors = _tensors(directory)
  del tensors["lm_head.weight"]
  _save_tensors(directory, tensors)
  config, params = huggingface.read_hf_t5(directory)
  assert not config.tie_word_embeddings
  np.testing.assert_array_equal(params["decoder"]["logits_dense"]["kernel"],
                                tensors["shared.weight"].T)
