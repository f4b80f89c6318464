"""Optimisers over the trainable (prompt) parameters only, built from optax pieces.

Parameter groups give named leaves their own learning rate: MPT's stage 3 trains P*
at 0.3 and U, V at 0.4 (`group_learning_rates={'shared_prompt': 0.3, 'task_cols':
0.4, 'task_rows': 0.4}`). Optimiser state exists only for the trees passed to
`init`, i.e. the prompt: the frozen backbone never reaches the optimiser.
"""

from typing import Mapping, Optional

import gin
import jax
import jax.numpy as jnp
import optax

DEFAULT_GROUP = "default"


@gin.configurable
def learning_rate_schedule(base: float, *, warmup_steps: int = 0, decay: str = "constant",
                           total_steps: Optional[int] = None) -> optax.Schedule:
  """Linear warm-up, then 'constant', 'linear' or 'cosine' decay to 0 at `total_steps`,
  or t5x's 'rsqrt' (base * sqrt(warmup / step) after warm-up)."""
  if decay in ("linear", "cosine") and not total_steps:
    raise ValueError(f"decay={decay!r} needs total_steps.")

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    warm = jnp.minimum(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    if decay == "constant":
      factor = 1.0
    elif decay == "rsqrt":
      factor = jnp.sqrt(max(warmup_steps, 1) / jnp.maximum(step, max(warmup_steps, 1)))
    elif decay == "linear":
      factor = jnp.clip(1.0 - step / total_steps, 0.0, 1.0)
    elif decay == "cosine":
      factor = 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.clip(step / total_steps, 0.0, 1.0)))
    else:
      raise ValueError(f"Unknown decay {decay!r}: constant, rsqrt, linear or cosine.")
    return base * warm * factor
  return schedule


@gin.configurable
def make_optimizer(name: str = "adafactor", learning_rate: float = 0.3, *,
                   group_learning_rates: Optional[Mapping[str, float]] = None,
                   clip_norm: Optional[float] = 1.0, weight_decay: float = 0.0,
                   adafactor_decay_rate: float = 0.8,
                   multiply_by_parameter_scale: bool = True,
                   b1: float = 0.9, b2: float = 0.999) -> optax.GradientTransformation:
  """'adafactor' (t5x's prompt-tuning setting: decay 0.8, update clipping 1.0),
  'adam' or 'adamw'; optional global-norm clipping before the update."""

  def base(lr):
    schedule = learning_rate_schedule(lr)
    if name == "adafactor":
      return optax.adafactor(schedule, decay_rate=adafactor_decay_rate,
                             clipping_threshold=1.0,
                             multiply_by_parameter_scale=multiply_by_parameter_scale,
                             weight_decay_rate=weight_decay or None)
    if name == "adam":
      return optax.adam(schedule, b1=b1, b2=b2)
    if name == "adamw":
      return optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay)
    raise ValueError(f"Unknown optimizer {name!r}: adafactor, adam or adamw.")

  groups = dict(group_learning_rates or {})
  if groups:
    transforms = {group: base(lr) for group, lr in groups.items()}
    transforms[DEFAULT_GROUP] = base(learning_rate)
    update = optax.multi_transform(transforms, lambda params: group_labels(params, groups))
  else:
    update = base(learning_rate)
  return optax.chain(optax.clip_by_global_norm(clip_norm), update) if clip_norm else update


def group_labels(params, groups: Mapping[str, float]):
  """Each leaf's group: the group named by its leaf name, else the default."""
  def label(path, _):
    leaf_name = getattr(path[-1], "key", str(path[-1]))
    return leaf_name if leaf_name in groups else DEFAULT_GROUP
  return jax.tree_util.tree_map_with_path(label, params)
