"""HuggingFace T5 directories (`config.json` + safetensors, single or sharded): read
into t5x's parameter names, and written back, for the demo's self-pretrained backbone
and for PyTorch users."""

import json
import re

from etils import epath
from flax import traverse_util
import numpy as np
import safetensors
import safetensors.numpy

from mpt_jax import paths
from mpt_jax.backbone import params as params_lib
from mpt_jax.backbone.config import T5Config

_HF_ATTENTION = {"q": "query", "k": "key", "v": "value", "o": "out"}
_OUR_ATTENTION = {ours: hf for hf, ours in _HF_ATTENTION.items()}
# Per stack, HF sub-layer index -> (our module, its layer norm, HF's module name).
_SUBLAYERS = {
    "encoder": {0: ("attention", "pre_attention_layer_norm", "SelfAttention"),
                1: ("mlp", "pre_mlp_layer_norm", "DenseReluDense")},
    "decoder": {0: ("self_attention", "pre_self_attention_layer_norm", "SelfAttention"),
                1: ("encoder_decoder_attention", "pre_cross_attention_layer_norm",
                    "EncDecAttention"),
                2: ("mlp", "pre_mlp_layer_norm", "DenseReluDense")},
}
_BLOCK = re.compile(r"(encoder|decoder)\.block\.(\d+)\.layer\.(\d+)\.(.+)")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"  # or shards listed in model.safetensors.index.json
_EMBEDDING = "token_embedder/embedding"
_HEAD = "decoder/logits_dense/kernel"


def _read_tensors(directory) -> dict[str, np.ndarray]:
  index = directory / "model.safetensors.index.json"
  if index.exists():
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
  elif (directory / WEIGHTS_FILE).exists():
    shards = [WEIGHTS_FILE]
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
    with paths.local_copy(path) as local, safetensors.safe_open(local, framework="flax") as f:
      for key in f.keys():
        tensors[key] = np.asarray(f.get_tensor(key), dtype=np.float32)
  return tensors


def _our_name(hf_name: str) -> tuple[str, bool]:
  """(our parameter name, whether the matrix is transposed), or ('', False) to skip."""
  if hf_name == "shared.weight":
    return _EMBEDDING, False
  if hf_name == "lm_head.weight":
    return _HEAD, True
  if hf_name.endswith("embed_tokens.weight"):
    return "", False  # copies of shared.weight
  if hf_name in ("encoder.final_layer_norm.weight", "decoder.final_layer_norm.weight"):
    stack = hf_name.split(".")[0]
    return f"{stack}/{stack}_norm/scale", False
  match = _BLOCK.fullmatch(hf_name)
  stack, block, sublayer, rest = match.groups() if match else (None,) * 4
  if not match or int(sublayer) not in _SUBLAYERS[stack]:
    raise ValueError(f"Unrecognised HuggingFace T5 tensor {hf_name!r}.")
  module, norm, _ = _SUBLAYERS[stack][int(sublayer)]
  prefix = f"{stack}/layers_{block}"
  if rest == "layer_norm.weight":
    return f"{prefix}/{norm}/scale", False
  if rest.endswith("relative_attention_bias.weight"):
    return f"{stack}/relpos_bias/rel_embedding", True
  projection = rest.split(".")[-2]  # SelfAttention.q.weight, DenseReluDense.wi_0.weight
  if module == "mlp":
    return f"{prefix}/mlp/{projection}/kernel", True
  if projection not in _HF_ATTENTION:
    raise ValueError(f"Unrecognised HuggingFace T5 tensor {hf_name!r}.")
  return f"{prefix}/{module}/{_HF_ATTENTION[projection]}/kernel", True


def _hf_name(name: str) -> tuple[str, bool]:
  """(HuggingFace tensor name, whether to transpose) of one of our parameters."""
  if name == _EMBEDDING:
    return "shared.weight", False
  if name == _HEAD:
    return "lm_head.weight", True
  parts = name.split("/")
  if parts[0] not in _SUBLAYERS or len(parts) < 3:
    raise ValueError(f"Parameter {name!r} has no HuggingFace T5 name.")
  stack, module, *rest = parts
  if module == f"{stack}_norm":
    return f"{stack}.final_layer_norm.weight", False
  if module == "relpos_bias":
    return f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", True
  block = module.removeprefix("layers_")
  layer_module, *projection = rest
  for sublayer, (ours, norm, hf_module) in _SUBLAYERS[stack].items():
    prefix = f"{stack}.block.{block}.layer.{sublayer}"
    if layer_module == norm:
      return f"{prefix}.layer_norm.weight", False
    if layer_module == ours:
      hf_projection = projection[0] if ours == "mlp" else _OUR_ATTENTION[projection[0]]
      return f"{prefix}.{hf_module}.{hf_projection}.weight", True
  raise ValueError(f"Parameter {name!r} has no HuggingFace T5 name.")


def read_hf_config(path) -> T5Config:
  """A HuggingFace T5 directory's shapes, from its config.json alone."""
  config_path = paths.as_path(path) / CONFIG_FILE
  if not config_path.exists():
    raise FileNotFoundError(
        f"{config_path} not found: a HuggingFace T5 directory needs config.json beside "
        "model.safetensors.")
  return T5Config.from_hf_dict(json.loads(config_path.read_text()))


def read_hf_t5(path) -> tuple[T5Config, dict]:
  """Returns (config, params) with params named as t5x's T5 network names them."""
  directory = paths.as_path(path)
  config = read_hf_config(directory)
  tensors = _read_tensors(directory)
  flat = {}
  for hf_name, value in tensors.items():
    name, transpose = _our_name(hf_name)
    if name:
      flat[name] = value.T if transpose else value
  if config.tie_word_embeddings:
    flat.pop(_HEAD, None)  # some T5 1.0 files also store the tied head
  elif _HEAD not in flat:
    # transformers >= 5 saves T5 1.1 with the head tied to the unscaled embedding.
    flat[_HEAD] = flat[_EMBEDDING].T.copy()
  params_lib.check_params(flat, config, str(directory))
  return config, params_lib.unflatten(flat)


def write_hf_t5(config: T5Config, params: dict, directory) -> epath.Path:
  """Writes `config.json` and `model.safetensors`; `read_hf_t5` reads them back."""
  directory = paths.as_path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  tensors = {}
  for name, value in traverse_util.flatten_dict(params, sep="/").items():
    hf_name, transpose = _hf_name(name)
    value = np.asarray(value, np.float32)
    tensors[hf_name] = np.ascontiguousarray(value.T if transpose else value)
  paths.write_atomically(directory / WEIGHTS_FILE, lambda local: (
      safetensors.numpy.save_file(tensors, local, metadata={"format": "pt"})))
  (directory / CONFIG_FILE).write_text(json.dumps(config.to_hf_dict(), indent=2))
  return directory
