"""Writes a backbone as a HuggingFace T5 directory (config.json + model.safetensors).

Used to save the demo's self-pretrained backbone and to hand our backbones to
PyTorch users; `hf_reader` reads it back.
"""

import json

from etils import epath
from flax import traverse_util
import numpy as np
import safetensors.numpy

from mpt_jax.config import T5Config
from mpt_jax.io import files

_ATTENTION = {"query": "q", "key": "k", "value": "v", "out": "o"}
_ENCODER = {"attention": (0, "SelfAttention"), "pre_attention_layer_norm": (0, None),
            "mlp": (1, "DenseReluDense"), "pre_mlp_layer_norm": (1, None)}
_DECODER = {"self_attention": (0, "SelfAttention"), "pre_self_attention_layer_norm": (0, None),
            "encoder_decoder_attention": (1, "EncDecAttention"),
            "pre_cross_attention_layer_norm": (1, None),
            "mlp": (2, "DenseReluDense"), "pre_mlp_layer_norm": (2, None)}


def _hf_name(name: str) -> tuple[str, bool]:
  """(HuggingFace tensor name, whether to transpose) of one of our parameters."""
  parts = name.split("/")
  if name == "token_embedder/embedding":
    return "shared.weight", False
  if name == "decoder/logits_dense/kernel":
    return "lm_head.weight", True
  stack = parts[0]
  if parts[1] == f"{stack}_norm":
    return f"{stack}.final_layer_norm.weight", False
  if parts[1] == "relpos_bias":
    return f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", True
  block = parts[1].split("_")[1]
  sublayer, module = (_ENCODER if stack == "encoder" else _DECODER)[parts[2]]
  prefix = f"{stack}.block.{block}.layer.{sublayer}"
  if module is None:
    return f"{prefix}.layer_norm.weight", False
  projection = parts[3] if module == "DenseReluDense" else _ATTENTION[parts[3]]
  return f"{prefix}.{module}.{projection}.weight", True


def write_hf_t5(config: T5Config, params: dict, directory) -> epath.Path:
  directory = files.as_path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  tensors = {}
  for name, value in traverse_util.flatten_dict(params, sep="/").items():
    hf_name, transpose = _hf_name(name)
    value = np.asarray(value, np.float32)
    tensors[hf_name] = np.ascontiguousarray(value.T if transpose else value)
  files.write_atomically(directory / "model.safetensors", lambda local: (
      safetensors.numpy.save_file(tensors, local, metadata={"format": "pt"})))
  (directory / "config.json").write_text(json.dumps(config.to_hf_dict(), indent=2))
  return directory
