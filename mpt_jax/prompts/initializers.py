"""Prompt initialisers that need more than a random key: the backbone's vocabulary
embeddings, label strings, or prompts saved by an earlier run.

Each returns a flax initializer `(key, shape, dtype) -> array`, so the same prompt
modules serve every initialisation. Shapes are checked when the module is created.
"""

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mpt_jax.prompts import modules as prompt_modules
from mpt_jax.prompts.prompt_set import PromptSet


def sampled_vocab(embedding: np.ndarray, first_n: int = 5000):
  """Rows drawn (with replacement) from the embeddings of ids [0, first_n).

  Lester et al. sample from the 5,000 most frequent tokens; SentencePiece ids are
  roughly frequency-ordered, so the first ids stand in for the most frequent.
  """
  table = jnp.asarray(embedding, jnp.float32)
  first_n = min(first_n, table.shape[0])

  def init(key, shape, dtype=jnp.float32):
    if shape[-1] != table.shape[1]:
      raise ValueError(f"Prompt width {shape[-1]} differs from the embedding width "
                       f"{table.shape[1]}.")
    ids = jax.random.randint(key, shape[:-1], 0, first_n)
    return jnp.take(table, ids, axis=0).astype(dtype)
  return init


def class_labels(embedding: np.ndarray, label_token_ids: Sequence[Sequence[int]],
                 first_n: int = 5000):
  """The first rows are the mean embeddings of each label's tokens; the rest sampled.

  Lester et al.'s class-label initialisation: the prompt starts near the words the
  model must produce.
  """
  table = np.asarray(embedding, np.float32)
  label_rows = np.stack([table[list(ids)].mean(axis=0) for ids in label_token_ids])
  rest = sampled_vocab(table, first_n)

  def init(key, shape, dtype=jnp.float32):
    length = shape[-2]
    if length < len(label_rows):
      raise ValueError(f"Prompt length {length} is shorter than the {len(label_rows)} "
                       "class labels it should start with.")
    sampled = rest(key, shape, dtype)
    return sampled.at[..., : len(label_rows), :].set(jnp.asarray(label_rows, dtype))
  return init


def from_array(array: np.ndarray, what: str = "array"):
  """Returns a fixed array, after checking it has the shape the module asks for."""
  value = np.asarray(array, np.float32)

  def init(key, shape, dtype=jnp.float32):
    del key
    if tuple(shape) != value.shape:
      raise ValueError(f"The initial {what} has shape {value.shape}, but the prompt "
                       f"module needs {tuple(shape)}. Check the prompt length and width.")
    return jnp.asarray(value, dtype)
  return init


def from_prompt_file(prompts: PromptSet, task=None, path="the prompt file"):
  """A saved task's merged prompt [l, d] (SPoT-style transfer from one teacher)."""
  task = prompts.task_names[0] if task is None else task
  return from_array(prompts.prompt(task), f"prompt of {task!r} from {path}")


def from_source(source: PromptSet, num_tasks: int, shared_per_task: bool = False,
                path="the source prompt file") -> dict:
  """MPT's target initialisation: P* and the mean of U and V over the source tasks.

  Returns the `shared_init`, `cols_init` and `rows_init` arguments of
  `DecomposedPrompt`, each of the `num_tasks` target tasks starting at the mean
  (and, with `shared_per_task`, at its own copy of P*).
  """
  if source.kind != "decomposed" or source.shared_per_task:
    raise ValueError(f"{path} holds a {source.kind} prompt without one shared P*; "
                     "initialising from source needs a distillation run's prompt.")
  shared = source.arrays[prompt_modules.SHARED]
  if shared_per_task:
    shared = np.repeat(shared[None], num_tasks, axis=0)
  mean_cols = source.arrays[prompt_modules.TASK_COLS].mean(axis=0, keepdims=True)
  mean_rows = source.arrays[prompt_modules.TASK_ROWS].mean(axis=0, keepdims=True)
  return {
      "shared_init": from_array(shared, "P*"),
      "cols_init": from_array(np.repeat(mean_cols, num_tasks, axis=0), "mean U"),
      "rows_init": from_array(np.repeat(mean_rows, num_tasks, axis=0), "mean V"),
  }
