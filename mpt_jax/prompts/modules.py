"""Prompt parameterisations: each maps task ids [B] to prompts [B, l, d].

* `SinglePrompt`: one prompt for every example (vanilla prompt tuning).
* `PromptBank`: one prompt per task (MPT's teachers, trained in one job).
* `DecomposedPrompt`: P* ∘ (U_k V_k), rank r; r = 1 is the paper's u_k ⊗ v_kᵀ.

Each module class names its `kind`, which a prompt file records. Task ids are checked
on the host (`check_task_ids`) before they reach a jitted step: inside jit an
out-of-range gather would silently clamp.
"""

from typing import Callable, Optional

import flax.linen as nn
from flax.linen import partitioning as nn_partitioning
import jax
import jax.numpy as jnp
import numpy as np

Initializer = Callable[..., jax.Array]
param_with_axes = nn_partitioning.param_with_axes

# Names of the trainable leaves; the optimiser's parameter groups refer to them.
SHARED = "shared_prompt"
TASK_COLS = "task_cols"
TASK_ROWS = "task_rows"


def uniform(scale: float = 0.5) -> Initializer:
  """U(-scale, scale), prompt-tuning's random init."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init


def check_task_ids(task_ids, num_tasks: int, task_names=None) -> None:
  """Raises ValueError naming the offending ids if any is outside [0, num_tasks)."""
  ids = np.asarray(task_ids)
  if not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"task_ids must be integers, got dtype {ids.dtype}.")
  bad = np.unique(ids[(ids < 0) | (ids >= num_tasks)])
  if bad.size:
    known = f" ({', '.join(task_names)})" if task_names else ""
    raise ValueError(
        f"task_ids {bad.tolist()} are out of range: this run has {num_tasks} tasks{known}, "
        f"so ids must be in [0, {num_tasks - 1}]. Check the run's task list.")


class SinglePrompt(nn.Module):
  kind = "single"
  length: int
  embed_dim: int
  initializer: Initializer = uniform()

  @nn.compact
  def __call__(self, task_ids):
    prompt = param_with_axes("prompt", self.initializer, (self.length, self.embed_dim),
                             jnp.float32, axes=("prompt", "embed"))
    return jnp.broadcast_to(prompt, (task_ids.shape[0],) + prompt.shape)


class PromptBank(nn.Module):
  """K independent prompts. `initializer` is called once per task with its own key;
  `bank_init`, if given, initialises the whole [K, l, d] table instead."""
  kind = "bank"
  num_tasks: int
  length: int
  embed_dim: int
  initializer: Initializer = uniform()
  bank_init: Optional[Initializer] = None

  @nn.compact
  def __call__(self, task_ids):
    def init_bank(key, shape, dtype=jnp.float32):
      keys = jax.random.split(key, shape[0])
      return jnp.stack([self.initializer(k, shape[1:], dtype) for k in keys])

    prompts = param_with_axes("prompts", self.bank_init or init_bank,
                              (self.num_tasks, self.length, self.embed_dim),
                              jnp.float32, axes=("tasks", "prompt", "embed"))
    return jnp.take(prompts, task_ids, axis=0)


def merge_decomposed(shared, cols, rows, xp=jnp):
  """P*_k ∘ (U_k V_k) for every k: cols [K, l, r], rows [K, r, d] -> [K, l, d].

  `shared` is one P* [l, d], or one per task [K, l, d] (independent single-target
  MPT prompts trained in one job). `xp` is jnp or np.
  """
  product = xp.einsum("klr,krd->kld", cols, rows)
  return (shared[None] if shared.ndim == 2 else shared) * product


class DecomposedPrompt(nn.Module):
  """MPT's prompt: a shared P* [l, d] times a per-task rank-r matrix U_k V_k.

  By default U = 1 and V = 1/r, so U_k V_k = 1 and every task starts at P* (the
  paper leaves this open); PEFT's choice is `jax.nn.initializers.normal(0.02)` for both.
  With `shared_per_task`, each task has its own P* [K, l, d]: K independent
  single-target MPT prompts (the paper's MPT) trained in one job, where the
  default shares P* across the tasks (the paper's multi-target MPT*).
  """
  kind = "decomposed"
  num_tasks: int
  length: int
  embed_dim: int
  rank: int = 1
  shared_init: Initializer = uniform()
  cols_init: Optional[Initializer] = None
  rows_init: Optional[Initializer] = None
  shared_per_task: bool = False

  @nn.compact
  def __call__(self, task_ids):
    if self.shared_per_task:
      shared = param_with_axes(SHARED, self.shared_init,
                               (self.num_tasks, self.length, self.embed_dim), jnp.float32,
                               axes=("tasks", "prompt", "embed"))
      shared = jnp.take(shared, task_ids, axis=0)
    else:
      shared = param_with_axes(SHARED, self.shared_init, (self.length, self.embed_dim),
                               jnp.float32, axes=("prompt", "embed"))[None]
    cols_init = self.cols_init or nn.initializers.ones
    rows_init = self.rows_init or nn.initializers.constant(1.0 / self.rank)
    cols = param_with_axes(TASK_COLS, cols_init,
                           (self.num_tasks, self.length, self.rank), jnp.float32,
                           axes=("tasks", "prompt", "rank"))
    rows = param_with_axes(TASK_ROWS, rows_init,
                           (self.num_tasks, self.rank, self.embed_dim), jnp.float32,
                           axes=("tasks", "rank", "embed"))
    task_cols = jnp.take(cols, task_ids, axis=0)
    task_rows = jnp.take(rows, task_ids, axis=0)
    return shared * jnp.einsum("blr,brd->bld", task_cols, task_rows)
