"""The loaded backbone: a frozen T5 read from a HuggingFace or T5X checkpoint, runnable
with a prompt, and recognisable by its fingerprint."""

import dataclasses
import functools
from typing import Optional, Union

from etils import epath
import flax
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from mpt_jax import arrays
from mpt_jax.backbone import hub
from mpt_jax.backbone import huggingface
from mpt_jax.backbone import params as params_lib
from mpt_jax.backbone import t5x_checkpoint
from mpt_jax.backbone.config import named_config
from mpt_jax.backbone.config import T5Config
from mpt_jax.backbone.t5 import T5

# Sub-trees a T5X checkpoint of a prompted model holds beside the backbone.
_PROMPT_SUBTREES = ("prompt", "teacher_prompt")


@dataclasses.dataclass
class Backbone:
  """A frozen T5: its config, its parameters (t5x names) and where they came from."""

  config: T5Config
  params: dict
  source: str = ""

  @functools.cached_property
  def module(self) -> T5:
    return T5(self.config)

  @functools.cached_property
  def fingerprint(self) -> str:
    """A short hash of every parameter's name, shape and bytes, to recognise a backbone."""
    return arrays.sha256(traverse_util.flatten_dict(self.params, sep="/"))[:16]

  def save(self, directory) -> epath.Path:
    """Writes a HuggingFace T5 directory that `load_backbone` (or transformers) reads."""
    return huggingface.write_hf_t5(self.config, self.params, directory)

  def save_t5x(self, directory, step: int = 1) -> epath.Path:
    """Writes a T5X (orbax) checkpoint, DIRECTORY/checkpoint_STEP, for t5x.train's
    INITIAL_CHECKPOINT_PATH; `load_backbone` reads it too."""
    return t5x_checkpoint.write_t5x_checkpoint(flax.core.unfreeze(self.params), directory, step)

  @functools.cached_property
  def _logits_fn(self):
    return jax.jit(lambda params, enc, dec, prompt: self.module.apply(
        {"params": params}, enc, dec, prompt))

  def logits(self, encoder_input_tokens, decoder_input_tokens, prompt=None) -> np.ndarray:
    """float32 logits [B, Ld, V]; `prompt` is None, [l, d] or [B, l, d] (encoder only)."""
    enc = _tokens("encoder_input_tokens", encoder_input_tokens)
    dec = _tokens("decoder_input_tokens", decoder_input_tokens)
    if enc.shape[0] != dec.shape[0]:
      raise ValueError(f"encoder_input_tokens has batch {enc.shape[0]} but "
                       f"decoder_input_tokens has batch {dec.shape[0]}.")
    for name, tokens in (("encoder_input_tokens", enc), ("decoder_input_tokens", dec)):
      if tokens.min() < 0 or tokens.max() >= self.config.vocab_size:
        raise ValueError(f"{name} has ids outside [0, {self.config.vocab_size}).")
    if prompt is not None:
      prompt = self._batched_prompt(np.asarray(prompt, np.float32), enc.shape[0])
    return np.asarray(self._logits_fn(self.params, enc, dec, prompt))

  def _batched_prompt(self, prompt: np.ndarray, batch: int) -> np.ndarray:
    d = self.config.d_model
    if prompt.ndim == 2 and prompt.shape[1] == d:
      return np.broadcast_to(prompt, (batch,) + prompt.shape)
    if prompt.ndim == 3 and prompt.shape[0] == batch and prompt.shape[2] == d:
      return prompt
    raise ValueError(f"prompt has shape {prompt.shape}; expected [l, {d}] or "
                     f"[{batch}, l, {d}] (batch {batch}, d_model {d}).")


def _tokens(name, tokens) -> np.ndarray:
  tokens = np.asarray(tokens)
  if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
    raise ValueError(f"{name} must be integer token ids [batch, length], got "
                     f"shape {tokens.shape} dtype {tokens.dtype}.")
  return tokens.astype(np.int32)


def _as_config(config) -> Optional[T5Config]:
  if config is None or isinstance(config, T5Config):
    return config
  return named_config(config)


def load_backbone(path, config: Union[None, str, T5Config] = None) -> Backbone:
  """Loads a HuggingFace T5 directory or a T5X checkpoint (legacy or orbax).

  `path` may also be a hub id ('google/t5-v1_1-base') or a model's directory in the
  HuggingFace cache (models--org--name), read from the local cache only (see hub.py).
  `config` (a T5Config or a name such as 't5_1_1_base') is needed only where the
  checkpoint lacks it: HF directories carry config.json; for T5X checkpoints it is
  inferred from the parameter shapes unless given.
  """
  source, path = hub.resolve(path)
  if not path.exists():
    raise FileNotFoundError(f"Backbone path {path} does not exist.")
  config = _as_config(config)
  if (path / huggingface.CONFIG_FILE).is_file():
    hf_config, params = huggingface.read_hf_t5(path)
    if config is not None and config.replace(dropout_rate=0) != hf_config.replace(
        dropout_rate=0):
      raise ValueError(f"{path}/config.json describes {hf_config}, not the given {config}.")
    return Backbone(config or hf_config, params, source)
  if t5x_checkpoint.is_t5x_checkpoint(path):
    flat = {k: v for k, v in t5x_checkpoint.read_t5x_params(path).items()
            if k.split("/")[0] not in _PROMPT_SUBTREES}
    config = config or t5x_checkpoint.infer_config(flat)
    params_lib.check_params(flat, config, str(path))
    return Backbone(config, params_lib.unflatten(flat), source)
  raise ValueError(
      f"{path} is neither a HuggingFace T5 directory (config.json + model.safetensors) "
      "nor a T5X checkpoint (checkpoint_N/checkpoint or checkpoint_N/state).")


def random_backbone(config: Union[str, T5Config], seed: int = 0) -> Backbone:
  """A randomly initialised backbone, for tests and demos."""
  config = _as_config(config)
  tokens = jnp.ones((1, 2), jnp.int32)
  params = jax.jit(lambda key: T5(config).init(key, tokens, tokens)["params"])(
      jax.random.PRNGKey(seed))
  return Backbone(config, jax.tree.map(np.asarray, params), f"random:{seed}")
