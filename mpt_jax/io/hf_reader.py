"""Reads a HuggingFace T5 directory (`config.json` + safetensors, single or sharded)."""

import json
import re

import numpy as np
import safetensors

from mpt_jax.config import T5Config
from mpt_jax.io import backbone_params
from mpt_jax.io import files

_ATTENTION = {"q": "query", "k": "key", "v": "value", "o": "out"}
# HF sub-layer index -> (our attention module, its layer norm), per stack.
_ENCODER_SUBLAYERS = {0: ("attention", "pre_attention_layer_norm"),
                      1: ("mlp", "pre_mlp_layer_norm")}
_DECODER_SUBLAYERS = {0: ("self_attention", "pre_self_attention_layer_norm"),
                      1: ("encoder_decoder_attention", "pre_cross_attention_layer_norm"),
                      2: ("mlp", "pre_mlp_layer_norm")}
_BLOCK = re.compile(r"(encoder|decoder)\.block\.(\d+)\.layer\.(\d+)\.(.+)")


def _read_tensors(directory) -> dict[str, np.ndarray]:
  index = directory / "model.safetensors.index.json"
  if index.exists():
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
  elif (directory / "model.safetensors").exists():
    shards = ["model.safetensors"]
  else:
    raise FileNotFoundError(
        f"{directory} has no model.safetensors or model.safetensors.index.json. "
        "Save the model with `save_pretrained(..., safe_serialization=True)`; "
        "PyTorch .bin files are pickles and are never loaded.")
  tensors = {}
  for name in shards:
    path = directory / name
    if not path.exists():
      raise FileNotFoundError(f"{path} is listed in the shard index but missing.")
    # The 'flax' framework reads bfloat16 too; everything is kept in float32.
    with files.local_copy(path) as local, safetensors.safe_open(local, framework="flax") as f:
      for key in f.keys():
        tensors[key] = np.asarray(f.get_tensor(key), dtype=np.float32)
  return tensors


def _our_name(hf_name: str) -> tuple[str, bool]:
  """(our parameter name, whether the matrix is transposed), or ('', False) to skip."""
  if hf_name == "shared.weight":
    return "token_embedder/embedding", False
  if hf_name == "lm_head.weight":
    return "decoder/logits_dense/kernel", True
  if hf_name.endswith("embed_tokens.weight"):
    return "", False  # copies of shared.weight
  if hf_name in ("encoder.final_layer_norm.weight", "decoder.final_layer_norm.weight"):
    stack = hf_name.split(".")[0]
    return f"{stack}/{stack}_norm/scale", False
  match = _BLOCK.fullmatch(hf_name)
  if not match:
    raise ValueError(f"Unrecognised HuggingFace T5 tensor {hf_name!r}.")
  stack, block, sublayer, rest = match.groups()
  table = _ENCODER_SUBLAYERS if stack == "encoder" else _DECODER_SUBLAYERS
  module, norm = table[int(sublayer)]
  prefix = f"{stack}/layers_{block}"
  if rest == "layer_norm.weight":
    return f"{prefix}/{norm}/scale", False
  if rest.endswith("relative_attention_bias.weight"):
    return f"{stack}/relpos_bias/rel_embedding", True
  projection = rest.split(".")[-2]  # SelfAttention.q.weight, DenseReluDense.wi_0.weight
  if module == "mlp":
    return f"{prefix}/mlp/{projection}/kernel", True
  return f"{prefix}/{module}/{_ATTENTION[projection]}/kernel", True


def read_hf_t5(path) -> tuple[T5Config, dict]:
  """Returns (config, params) with params named as t5x's T5 network names them."""
  directory = files.as_path(path)
  config_path = directory / "config.json"
  if not config_path.exists():
    raise FileNotFoundError(
        f"{config_path} not found: a HuggingFace T5 directory needs config.json beside "
        "model.safetensors.")
  hf_config = json.loads(config_path.read_text())
  config = T5Config.from_hf_dict(hf_config)
  tensors = _read_tensors(directory)
  flat = {}
  for hf_name, value in tensors.items():
    name, transpose = _our_name(hf_name)
    if name:
      flat[name] = value.T if transpose else value
  head = "decoder/logits_dense/kernel"
  if config.tie_word_embeddings:
    flat.pop(head, None)  # some T5 1.0 files also store the tied head
  elif head not in flat:
    # transformers >= 5 saves T5 1.1 with the head tied to the unscaled embedding.
    flat[head] = flat["token_embedder/embedding"].T.copy()
  backbone_params.check_params(flat, config, str(directory))
  return config, backbone_params.unflatten(flat)
