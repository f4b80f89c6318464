"""The backbone's parameter tree: its shapes and logical axes, the check every
checkpoint reader runs against them, and the per-layer <-> scanned layouts.

Checkpoints always hold the per-layer layout (`encoder/layers_0/...`), as t5x and
HuggingFace write it; a network with `scan_layers` takes each stack's layers stacked
on a leading axis (`encoder/layers/...`), converted when the backbone is placed.
"""

import functools
import re

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from mpt_jax.backbone.config import T5Config
from mpt_jax.backbone.t5 import T5


@functools.lru_cache(maxsize=16)
def abstract_variables(config: T5Config) -> dict:
  """{'params': ShapeDtypeStructs, 'params_axes': logical axes} of `T5(config)`,
  without allocating: the one place the backbone's shapes come from."""
  tokens = jnp.ones((1, 2), jnp.int32)
  return jax.eval_shape(lambda: T5(config).init(jax.random.PRNGKey(0), tokens, tokens))


def expected_shapes(config: T5Config) -> dict[str, tuple[int, ...]]:
  """{'encoder/layers_0/attention/query/kernel': (d, h*k), ...}."""
  flat = traverse_util.flatten_dict(abstract_variables(config)["params"], sep="/")
  return {name: tuple(leaf.shape) for name, leaf in flat.items()}


def check_params(flat_params: dict[str, np.ndarray], config: T5Config, source: str) -> None:
  """Raises ValueError listing every missing, unexpected or mis-shaped parameter."""
  expected = expected_shapes(config)
  problems = []
  for name in sorted(set(expected) - set(flat_params)):
    problems.append(f"missing {name} {expected[name]}")
  for name in sorted(set(flat_params) - set(expected)):
    problems.append(f"unexpected {name} {tuple(flat_params[name].shape)}")
  for name in sorted(set(expected) & set(flat_params)):
    if tuple(flat_params[name].shape) != expected[name]:
      problems.append(f"{name}: checkpoint has {tuple(flat_params[name].shape)}, "
                      f"the config needs {expected[name]}")
  if problems:
    shown = "\n  ".join(problems[:20])
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    raise ValueError(
        f"The checkpoint at {source} does not match the backbone config "
        f"({config.num_layers}+{config.num_decoder_layers} layers, d_model "
        f"{config.d_model}, vocab {config.vocab_size}):\n  {shown}{more}\n"
        "Pass the config the checkpoint was trained with.")


def unflatten(flat_params: dict[str, np.ndarray]) -> dict:
  return traverse_util.unflatten_dict(flat_params, sep="/")


_STACKS = ("encoder", "decoder")


def _num_layers(config: T5Config, stack: str) -> int:
  return config.num_layers if stack == "encoder" else config.num_decoder_layers


def stack_layers(params: dict, config: T5Config) -> dict:
  """Per-layer parameters -> the scanned layout: `{stack}/layers_{i}/...` become
  `{stack}/layers/...` with the layer on axis 0. Works on numpy and jax arrays."""
  flat = traverse_util.flatten_dict(params, sep="/")
  out = {}
  for name, value in flat.items():
    match = re.match(r"(encoder|decoder)/layers_(\d+)/(.*)", name)
    if not match:
      out[name] = value
    elif match.group(2) == "0":
      stack, rest = match.group(1), match.group(3)
      layers = [flat[f"{stack}/layers_{i}/{rest}"] for i in range(_num_layers(config, stack))]
      xp = np if all(isinstance(layer, np.ndarray) for layer in layers) else jnp
      out[f"{stack}/layers/{rest}"] = xp.stack(layers)
  return traverse_util.unflatten_dict(out, sep="/")


def unstack_layers(params: dict, config: T5Config) -> dict:
  """The inverse of `stack_layers`: the per-layer layout checkpoints are written in."""
  flat = traverse_util.flatten_dict(params, sep="/")
  out = {}
  for name, value in flat.items():
    stack, _, rest = name.partition("/layers/")
    if stack in _STACKS and rest:
      for i in range(_num_layers(config, stack)):
        out[f"{stack}/layers_{i}/{rest}"] = value[i]
    else:
      out[name] = value
  return traverse_util.unflatten_dict(out, sep="/")
