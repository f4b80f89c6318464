"""T5 backbone hyperparameters and the named sizes of T5 1.0 and T5 1.1.

Field names follow HuggingFace's `config.json` so that a checkpoint's config reads
one to one; `T5Config.from_hf_dict` and `to_hf_dict` do the conversion.
"""

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# What a layer keeps for the backward pass (jax.checkpoint_policies), by the names
# t5x and MaxText users know; "none" keeps everything (no rematerialisation).
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,  # only each layer's input
    "dots_with_no_batch_dims": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
}


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Hyperparameters of a T5 encoder-decoder.

  `tie_word_embeddings` selects T5 1.0's output head (the token embedding, logits
  scaled by d_model^-0.5); otherwise the head is an untied `logits_dense` (T5 1.1).
  """

  vocab_size: int = 32128
  d_model: int = 512
  d_kv: int = 64
  d_ff: int = 2048
  num_heads: int = 8
  num_layers: int = 6
  num_decoder_layers: int = 6
  feed_forward_proj: str = "relu"  # "relu" (T5 1.0) or "gated-gelu" (T5 1.1)
  tie_word_embeddings: bool = True
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  dropout_rate: float = 0.1
  layer_norm_epsilon: float = 1e-6
  dtype: str = "float32"  # activations; parameters, softmax and norms stay float32
  one_hot_embeddings: bool = False  # t5x's TPU habit; a gather is faster elsewhere
  # How the network runs, not what it is (never read from or written to config.json):
  remat_policy: str = "none"  # a key of REMAT_POLICIES, applied to every layer
  scan_layers: bool = False  # one scanned layer per stack, parameters stacked on 'layers'

  def __post_init__(self):
    if self.feed_forward_proj not in ("relu", "gated-gelu"):
      raise ValueError(
          f"feed_forward_proj={self.feed_forward_proj!r} is not supported; use "
          "'relu' (T5 1.0) or 'gated-gelu' (T5 1.1).")
    if self.dtype not in _DTYPES:
      raise ValueError(f"dtype={self.dtype!r}: use one of {sorted(_DTYPES)}.")
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"remat_policy={self.remat_policy!r}: use one of "
                       f"{sorted(REMAT_POLICIES)}.")

  @property
  def activation_dtype(self):
    return _DTYPES[self.dtype]

  @property
  def mlp_activations(self) -> tuple[str, ...]:
    return ("gelu", "linear") if self.feed_forward_proj == "gated-gelu" else ("relu",)

  def replace(self, **changes) -> "T5Config":
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_hf_dict(cls, hf: Mapping[str, Any]) -> "T5Config":
    """Reads a HuggingFace T5 `config.json`.

    transformers >= 5 always writes `tie_word_embeddings: true` and records the
    T5 1.0 behaviour in `scale_decoder_outputs`; both spellings are understood.
    A head that is not scaled is treated as untied (T5 1.1).
    """
    required = ("vocab_size", "d_model", "d_kv", "d_ff", "num_heads", "num_layers")
    missing = [key for key in required if key not in hf]
    if missing or hf.get("model_type", "t5") != "t5":
      raise ValueError(f"Not a T5 config.json: model_type {hf.get('model_type')!r}, "
                       f"missing {missing}.")
    scaled = hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True))
    tied = bool(hf.get("tie_word_embeddings", True)) and bool(scaled)
    proj = hf.get("feed_forward_proj", "relu")
    if proj in ("gated-gelu", "gated-gelu_new"):
      proj = "gated-gelu"
    return cls(
        vocab_size=hf["vocab_size"],
        d_model=hf["d_model"],
        d_kv=hf["d_kv"],
        d_ff=hf["d_ff"],
        num_heads=hf["num_heads"],
        num_layers=hf["num_layers"],
        num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
        feed_forward_proj=proj,
        tie_word_embeddings=tied,
        relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
        dropout_rate=hf.get("dropout_rate", 0.1),
        layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-6),
    )

  def to_hf_dict(self) -> dict[str, Any]:
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "vocab_size": self.vocab_size,
        "d_model": self.d_model,
        "d_kv": self.d_kv,
        "d_ff": self.d_ff,
        "num_heads": self.num_heads,
        "num_layers": self.num_layers,
        "num_decoder_layers": self.num_decoder_layers,
        "feed_forward_proj": self.feed_forward_proj,
        "tie_word_embeddings": self.tie_word_embeddings,
        "scale_decoder_outputs": self.tie_word_embeddings,
        "relative_attention_num_buckets": self.relative_attention_num_buckets,
        "relative_attention_max_distance": self.relative_attention_max_distance,
        "dropout_rate": self.dropout_rate,
        "layer_norm_epsilon": self.layer_norm_epsilon,
        "is_encoder_decoder": True,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    }


# (d_model, d_kv, d_ff, num_heads, num_layers) of the published checkpoints, T5 1.0 then
# T5 1.1, by size.
_SIZES = {
    "tiny": ((64, 16, 128, 4, 2), (64, 16, 128, 4, 2)),
    "small": ((512, 64, 2048, 8, 6), (512, 64, 1024, 6, 8)),
    "base": ((768, 64, 3072, 12, 12), (768, 64, 2048, 12, 12)),
    "large": ((1024, 64, 4096, 16, 24), (1024, 64, 2816, 16, 24)),
    "xl": ((1024, 128, 16384, 32, 24), (2048, 64, 5120, 32, 24)),
    "xxl": ((1024, 128, 65536, 128, 24), (4096, 64, 10240, 64, 24)),
}
_VERSIONS = ("t5_1_0", "t5_1_1")


def named_config(name: str, **overrides) -> T5Config:
  """`named_config('t5_1_1_base')`; sizes tiny/small/base/large/xl/xxl."""
  version, _, size = name.rpartition("_")
  if version not in _VERSIONS or size not in _SIZES:
    known = [f"{v}_{s}" for v in _VERSIONS for s in _SIZES]
    raise ValueError(f"Unknown backbone config {name!r}; known: {known}.")
  d_model, d_kv, d_ff, heads, layers = _SIZES[size][_VERSIONS.index(version)]
  gated = version == "t5_1_1"
  config = T5Config(
      d_model=d_model, d_kv=d_kv, d_ff=d_ff, num_heads=heads, num_layers=layers,
      num_decoder_layers=layers,
      feed_forward_proj="gated-gelu" if gated else "relu",
      tie_word_embeddings=not gated)
  return config.replace(**overrides)
