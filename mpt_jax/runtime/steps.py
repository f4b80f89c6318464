"""The train step: differentiate the prompt only, for one run or a bank of runs.

The backbone (and a distillation run's teacher prompts) is a separate,
non-differentiated argument of the step, so no weight gradient of the frozen model
is ever computed and optimizer state exists for the prompt alone.

A bank of R runs that share the backbone and the prompt's structure is one step: the
loss and its gradient are mapped over the runs (`jax.vmap`), so each run's loss is the
mean over its own rows, its dropout key its own and its gradient reaches only its own
prompt; each run's optimizer (its learning rates, its clipping) then updates its own
state. The loop always runs a bank; a lone run is a bank of one.
"""

from typing import Any, Sequence

import flax
import jax
import jax.numpy as jnp
import optax

from mpt_jax.model import models
from mpt_jax.runtime.partitioning import Partitioner


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any  # the trainable tree: {'prompt': ...}
  opt_state: Any
  rng: jax.Array


def _loss_and_grad(model: models.PromptTuningModel, use_dropout: bool):
  """(params, rng, step, frozen, batch) -> ((loss, metrics), gradient of `params`), the
  dropout key folded from the run's key and step."""
  def loss_and_grad(params, rng, step, frozen, batch):
    rng = jax.random.fold_in(rng, step)

    def loss_of(trainable):
      return model.loss_fn(models.merge(trainable, frozen), batch,
                           rng if use_dropout else None)
    return jax.value_and_grad(loss_of, has_aux=True)(params)
  return loss_and_grad


def _updated(state: TrainState, grads, optimizer: optax.GradientTransformation) -> TrainState:
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       opt_state=opt_state)


def make_train_step(model: models.PromptTuningModel, optimizer: optax.GradientTransformation,
                    use_dropout: bool):
  """step(state, frozen, batch) -> (state, metrics) of one run, differentiating
  `state.params` only."""
  loss_and_grad = _loss_and_grad(model, use_dropout)

  def train_step(state: TrainState, frozen, batch):
    (_, metrics), grads = loss_and_grad(state.params, state.rng, state.step, frozen, batch)
    metrics = {**metrics, "grad_norm": optax.tree.norm(grads)}
    return _updated(state, grads, optimizer), metrics
  return train_step


@flax.struct.dataclass
class FirstNonFinite:
  """Each run's first step whose loss was not finite (0: none yet) and that loss [R].
  Carried from step to step on the device, so no step's loss has to be fetched to
  notice it; a run with a step here is no longer updated."""
  step: jax.Array
  loss: jax.Array

  @staticmethod
  def replicated(partitioner: Partitioner) -> "FirstNonFinite":
    return FirstNonFinite(partitioner.replicated, partitioner.replicated)


def stack_runs(trees: Sequence[Any]) -> Any:
  """A bank's per-run trees (one structure) stacked on a leading run axis, as its
  vmapped step and evaluation take them; inside jit, where stacking is free to fuse."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def make_bank_step(model: models.PromptTuningModel,
                   optimizers: Sequence[optax.GradientTransformation], use_dropout: bool):
  """step(states, frozen, batch, first) -> (states, metrics, first) for a bank of
  len(optimizers) runs: `states` holds each run's TrainState, `batch` and every metric
  have the runs on axis 0. A run whose loss is not finite keeps the state it had
  before that step, from then on; `first` records the step."""
  loss_and_grad = jax.vmap(_loss_and_grad(model, use_dropout), in_axes=(0, 0, 0, None, 0))

  def bank_step(states: Sequence[TrainState], frozen, batch, first: FirstNonFinite):
    params, rngs, steps = (stack_runs([getattr(s, name) for s in states])
                           for name in ("params", "rng", "step"))
    (loss, metrics), grads = loss_and_grad(params, rngs, steps, frozen, batch)
    healthy = (first.step == 0) & jnp.isfinite(loss)
    new_states = []
    for r, (state, optimizer) in enumerate(zip(states, optimizers)):
      updated = _updated(state, jax.tree.map(lambda g, r=r: g[r], grads), optimizer)
      new_states.append(jax.tree.map(lambda new, old, r=r: jnp.where(healthy[r], new, old),
                                     updated, state))
    failed_now = (first.step == 0) & ~healthy
    first = FirstNonFinite(jnp.where(failed_now, steps + 1, first.step),
                           jnp.where(failed_now, loss, first.loss))
    metrics = {**metrics, "grad_norm": jax.vmap(optax.tree.norm)(grads)}
    return tuple(new_states), metrics, first
  return bank_step


def initial_train_state(trainable, optimizer: optax.GradientTransformation,
                        seed: int) -> TrainState:
  """Step 0: the trainable tree, its fresh optimizer state and the run's dropout key."""
  return TrainState(jnp.int32(0), trainable, optimizer.init(trainable),
                    jax.random.PRNGKey(seed))


def abstract_train_state(initial_trainable, optimizer: optax.GradientTransformation,
                         seed: int) -> TrainState:
  """The train state's shapes and dtypes, from the trainable tree's (arrays or shapes)."""
  return jax.eval_shape(lambda p: initial_train_state(p, optimizer, seed), initial_trainable)


def train_state_shardings(partitioner: Partitioner, abstract_state: TrainState,
                          prompt_shardings) -> TrainState:
  """The prompt and its optimizer state are small: the prompt follows its axes, the
  optimizer state is replicated."""
  replicated = partitioner.replicated
  return TrainState(replicated, prompt_shardings,
                    jax.tree.map(lambda _: replicated, abstract_state.opt_state), replicated)


def jit_bank_step(model: models.PromptTuningModel,
                  optimizers: Sequence[optax.GradientTransformation], partitioner: Partitioner,
                  state_shardings: Sequence[TrainState], frozen_shardings):
  """The loop's step jitted over the mesh, the states donated: (states, frozen, batch
  [R, B, ...], FirstNonFinite) -> (states, metrics [R], FirstNonFinite).
  `python -m mpt_jax.aot` compiles this same function for TPU topologies."""
  replicated, guard = partitioner.replicated, FirstNonFinite.replicated(partitioner)
  step = make_bank_step(model, optimizers, model.config.dropout_rate > 0)
  state_shardings = tuple(state_shardings)
  return partitioner.jit(
      step, in_shardings=(state_shardings, frozen_shardings, partitioner.bank_batch_sharding,
                          guard),
      out_shardings=(state_shardings, replicated, guard), donate_argnums=(0,))
