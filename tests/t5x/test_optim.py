"""mpt_jax/t5x/optim.py: which parameters t5x's MultiOptimizer trains (`prompt_traversal`),
the second learning rate of stage 3 (`ScaledLearningRate`), and Adafactor's factor rules
for the prompt axes (`logical_factor_rules`). Skipped where t5x is not installed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip(
    "t5x.optimizers", reason="t5x is not importable: it is not on PyPI; install it from "
    "github.com/google-research/t5x to run the t5x adapter's tests.")

# pylint: disable=g-import-not-at-top
from flax import traverse_util
from t5x import adafactor
from t5x import optimizers

import mpt_jax
from mpt_jax.model import models
from mpt_jax.prompts import modules as prompts
from mpt_jax.t5x import optim as mpt_optim
from tests import helpers


def _distillation_params():
  """Every parameter of a tiny distillation network: backbone, student, teachers."""
  config = mpt_jax.named_config("t5_1_1_tiny", **helpers.TINY)
  student = prompts.DecomposedPrompt(3, 4, config.d_model)
  teacher = prompts.PromptBank(3, 4, config.d_model)
  mpt = models.DistillationModel(config, student, teacher_prompt=teacher)
  return mpt.init_variables(jax.random.PRNGKey(0))["params"]


def _paths_selected(traversal, params):
  """The '/'-joined paths of the leaves `traversal` selects in `params`."""
  flat = traverse_util.flatten_dict(params)
  paths = traverse_util.unflatten_dict({key: "/".join(key) for key in flat})
  return set(traversal.iterate(paths))


def test_prompt_traversal_selects_the_student_prompt_and_nothing_else():
  params = _distillation_params()
  assert "teacher_prompt" in params and "encoder" in params  # both are present to refuse
  selected = _paths_selected(mpt_optim.prompt_traversal(), params)
  assert selected == {"prompt/shared_prompt", "prompt/task_cols", "prompt/task_rows"}


def test_prompt_traversal_with_leaves_selects_only_those_leaves_of_the_prompt():
  params = _distillation_params()
  shared = _paths_selected(mpt_optim.prompt_traversal(leaves=["shared_prompt"]), params)
  factors = _paths_selected(
      mpt_optim.prompt_traversal(leaves=["task_cols", "task_rows"]), params)
  assert shared == {"prompt/shared_prompt"}
  assert factors == {"prompt/task_cols", "prompt/task_rows"}


def test_prompt_traversal_with_leaves_ignores_same_named_leaves_outside_the_prompt():
  params = {"prompt": {"prompts": 1}, "teacher_prompt": {"prompts": 2},
            "encoder": {"prompts": 3}}
  selected = list(mpt_optim.prompt_traversal(leaves=["prompts"]).iterate(params))
  assert selected == [1]


def _grads_and_params():
  rng = np.random.default_rng(0)
  params = {"prompt": {name: jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
                       for name in ("shared_prompt", "task_cols")}}
  grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
  return params, grads


def _step(optimizer_def, params, grads, learning_rate):
  """One step as t5x's trainer takes it: the schedule's rate overrides the hyper params."""
  optimizer = optimizer_def.create(params)
  return optimizer.apply_gradient(grads, learning_rate=learning_rate).target


def test_scaled_learning_rate_steps_as_its_optimizer_at_scale_times_the_rate():
  params, grads = _grads_and_params()
  scaled = mpt_optim.ScaledLearningRate(adafactor.Adafactor(), scale=4.0)
  got = _step(scaled, params, grads, learning_rate=0.05)
  expected = _step(adafactor.Adafactor(), params, grads, learning_rate=0.2)
  unscaled = _step(adafactor.Adafactor(), params, grads, learning_rate=0.05)
  for name in params["prompt"]:
    np.testing.assert_allclose(got["prompt"][name], expected["prompt"][name], rtol=1e-6)
    assert not np.allclose(got["prompt"][name], unscaled["prompt"][name])


def test_multi_optimizer_gives_the_factors_the_scaled_rate_and_the_shared_prompt_the_rate():
  params, grads = _grads_and_params()
  multi = optimizers.MultiOptimizer((
      (mpt_optim.prompt_traversal(leaves=["shared_prompt"]), adafactor.Adafactor()),
      (mpt_optim.prompt_traversal(leaves=["task_cols"]),
       mpt_optim.ScaledLearningRate(adafactor.Adafactor(), scale=4.0))))
  got = _step(multi, params, grads, learning_rate=0.05)["prompt"]
  at_rate = _step(adafactor.Adafactor(), params, grads, learning_rate=0.05)["prompt"]
  at_scaled_rate = _step(adafactor.Adafactor(), params, grads, learning_rate=0.2)["prompt"]
  np.testing.assert_allclose(got["shared_prompt"], at_rate["shared_prompt"], rtol=1e-6)
  np.testing.assert_allclose(got["task_cols"], at_scaled_rate["task_cols"], rtol=1e-6)


def test_prompt_only_optimizer_keeps_a_scalar_state_for_frozen_parameters():
  params, grads = _grads_and_params()
  params["decoder"] = {"scale": jnp.ones((4,))}
  grads["decoder"] = {"scale": jnp.ones((4,))}
  only_prompt = mpt_optim.PromptOnlyOptimizer(
      ((mpt_optim.prompt_traversal(), adafactor.Adafactor()),))
  optimizer = only_prompt.create(params)
  frozen_state = optimizer.state.param_states["decoder"]["scale"]
  assert frozen_state.shape == () and float(frozen_state) == 0.0  # t5x's MultiOptimizer: None
  stepped = optimizer.apply_gradient(grads, learning_rate=0.05)
  np.testing.assert_array_equal(stepped.target["decoder"]["scale"], params["decoder"]["scale"])
  assert stepped.state.param_states["decoder"]["scale"].shape == ()
  expected = _step(adafactor.Adafactor(), {"prompt": params["prompt"]},
                   {"prompt": grads["prompt"]}, learning_rate=0.05)
  for name in params["prompt"]:
    np.testing.assert_allclose(stepped.target["prompt"][name], expected["prompt"][name],
                               rtol=1e-6)
  axes = jax.tree.map(lambda _: jax.sharding.PartitionSpec(), params)
  derived = only_prompt.derive_logical_axes(optimizer, axes)
  assert derived.state.param_states["decoder"]["scale"] == jax.sharding.PartitionSpec()


def test_logical_factor_rules_leave_every_prompt_axis_unfactored():
  rules = mpt_optim.logical_factor_rules()
  for axis in ("prompt", "tasks", "rank"):
    assert rules[axis] == adafactor.FactorDim.NONE, axis
  # t5x's own rules are kept.
  for axis, rule in adafactor.standard_logical_factor_rules().items():
    assert rules[axis] == rule, axis


def test_adafactor_with_the_rules_keeps_a_full_second_moment_for_the_prompt():
  # Large enough that Adafactor would factor them if a rule allowed it.
  shapes = {"prompt": {"prompts": ((3, 160, 192), ("tasks", "prompt", "embed")),
                       "task_rows": ((3, 160, 192), ("tasks", "rank", "embed"))},
            "token_embedder": {"embedding": ((256, 192), ("vocab", "embed"))}}
  params = {group: {name: jnp.zeros(shape) for name, (shape, _) in leaves.items()}
            for group, leaves in shapes.items()}
  axes = {group: {name: jax.sharding.PartitionSpec(*names)
                  for name, (_, names) in leaves.items()}
          for group, leaves in shapes.items()}
  optimizer = adafactor.Adafactor(logical_factor_rules=mpt_optim.logical_factor_rules())
  optimizer.set_param_axes(axes)
  states = optimizer.init_state(params).param_states
  for name, (shape, _) in shapes["prompt"].items():
    assert states["prompt"][name].v.shape == shape, name
    assert states["prompt"][name].v_row.shape == (1,), name
  # The backbone's embedding is still factored by t5x's rules.
  embedding = states["token_embedder"]["embedding"]
  assert embedding.v.shape == (1,) and embedding.v_row.shape != (1,)
