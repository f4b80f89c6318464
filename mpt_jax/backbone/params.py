"""The backbone's parameter tree: its shapes and logical axes, and the check every
checkpoint reader runs against them."""

import functools

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
