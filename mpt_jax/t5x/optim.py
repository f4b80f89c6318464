"""Freezing and two learning rates with t5x's optimizers.

Only the `prompt` sub-tree is ever updated (`PromptOnlyOptimizer`, t5x's MultiOptimizer
over traversals of it). t5x's learning-rate schedule overrides the rate of every
sub-optimizer alike, so a second speed is a fixed multiple of it (`ScaledLearningRate`).
"""

from typing import Optional, Sequence

from flax import traverse_util
import jax
import jax.numpy as jnp
from t5x import adafactor
from t5x import optimizers
from t5x import partitioning

PROMPT_AXES = ("prompt", "tasks", "rank")


def prompt_traversal(leaves: Optional[Sequence[str]] = None):
  """The trainable prompt's parameters (not the backbone, not the teachers); with
  `leaves`, only those named ones (e.g. ['shared_prompt'])."""
  def matches(path: str, _) -> bool:
    parts = path.strip("/").split("/")  # flax paths look like /prompt/prompts
    return parts[0] == "prompt" and (leaves is None or parts[-1] in leaves)
  return traverse_util.ModelParamTraversal(matches)


def _zero():
  return jnp.zeros((), jnp.float32)


def _with_placeholders(tree, placeholder):
  return jax.tree.map(lambda x: placeholder() if x is None else x, tree,
                      is_leaf=lambda x: x is None)


class PromptOnlyOptimizer(optimizers.MultiOptimizer):
  """t5x's MultiOptimizer, with a scalar 0 as the state of every frozen parameter where
  it keeps None: t5x's orbax checkpointer writes nothing for a None state but reads
  every state leaf back, so resuming a run fails (NOT_FOUND ...param_states.decoder...).
  A scalar per frozen parameter is a few hundred bytes, written and read like any other."""

  def init_state(self, params):
    state = super().init_state(params)
    return state.replace(param_states=_with_placeholders(state.param_states, _zero))

  def apply_gradient(self, hyper_params, params, state, grads):
    new_params, new_state = super().apply_gradient(hyper_params, params, state, grads)
    return new_params, new_state.replace(
        param_states=_with_placeholders(new_state.param_states, _zero))

  def derive_logical_axes(self, optimizer, param_logical_axes):
    derived = super().derive_logical_axes(optimizer, param_logical_axes)
    axes = _with_placeholders(derived.state.param_states, partitioning.PartitionSpec)
    return derived.replace(state=derived.state.replace(param_states=axes))


class ScaledLearningRate(optimizers.OptimizerDef):
  """`optimizer` at `scale` times the learning rate t5x's schedule gives."""

  def __init__(self, optimizer: optimizers.OptimizerDef, scale: float):
    self.optimizer = optimizer
    self.scale = scale
    super().__init__(optimizer.hyper_params)

  def init_state(self, params):
    return self.optimizer.init_state(params)

  def apply_gradient(self, hyper_params, params, state, grads):
    scaled = hyper_params.replace(learning_rate=hyper_params.learning_rate * self.scale)
    return self.optimizer.apply_gradient(scaled, params, state, grads)

  def set_param_axes(self, param_logical_axes):
    if hasattr(self.optimizer, "set_param_axes"):
      self.optimizer.set_param_axes(param_logical_axes)

  def derive_logical_axes(self, optimizer, param_logical_axes):
    return self.optimizer.derive_logical_axes(optimizer, param_logical_axes)


def logical_factor_rules() -> dict:
  """t5x's Adafactor factor rules plus the prompt axes, which are never factored.

  t5x applies factor rules to parameters of 3 or more dimensions (a bank, U, V); a 2-D
  P* [l, d] follows t5x's size rule instead: factored only when l and d are both >= 128.
  """
  rules = dict(adafactor.standard_logical_factor_rules())
  rules.update({axis: adafactor.FactorDim.NONE for axis in PROMPT_AXES})
  return rules


def prompt_axis_rules():
  """Logical-axis rules for t5x's partitioner: the prompt axes are replicated."""
  return [(axis, None) for axis in PROMPT_AXES]
