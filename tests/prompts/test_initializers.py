"""Prompt initialisers: sampled vocabulary, class labels, fixed arrays and MPT's
target initialisation from a distillation run (P* and the mean U, V)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mpt_jax
from mpt_jax.prompts import initializers
from mpt_jax.prompts import modules as prompts
from tests import helpers


def test_sampled_vocab_rows_come_from_the_first_ids():
  embedding = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
  init = initializers.sampled_vocab(embedding, first_n=10)
  rows = np.asarray(init(jax.random.PRNGKey(3), (20, 6)))
  for row in rows:
    distances = np.abs(embedding - row).sum(axis=1)
    assert distances.min() == 0 and distances.argmin() < 10


def test_class_label_init_starts_with_label_embeddings():
  embedding = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
  init = initializers.class_labels(embedding, [[3, 4], [9]], first_n=10)
  value = np.asarray(init(jax.random.PRNGKey(0), (5, 6)))
  np.testing.assert_allclose(value[0], embedding[[3, 4]].mean(axis=0), rtol=1e-6)
  np.testing.assert_allclose(value[1], embedding[9], rtol=1e-6)
  with pytest.raises(ValueError, match="shorter than the 2 class labels"):
    init(jax.random.PRNGKey(0), (1, 6))


def test_from_source_gives_the_shared_prompt_and_mean_factors():
  source = helpers.decomposed_set()
  inits = initializers.from_source(source, num_tasks=2)
  module = prompts.DecomposedPrompt(num_tasks=2, length=4, embed_dim=6, rank=2, **inits)
  params = module.init(jax.random.PRNGKey(0), jnp.array([0]))["params"]
  np.testing.assert_allclose(params[prompts.SHARED], source.arrays[prompts.SHARED])
  for key in (prompts.TASK_COLS, prompts.TASK_ROWS):
    for task in range(2):
      np.testing.assert_allclose(params[key][task], source.arrays[key].mean(axis=0),
                                 rtol=1e-6)
  with pytest.raises(ValueError, match=r"P\* has shape \(4, 6\).*needs \(5, 6\)"):
    prompts.DecomposedPrompt(2, 5, 6, 2, **inits).init(jax.random.PRNGKey(0),
                                                       jnp.array([0]))


def test_from_array_checks_the_shape_the_module_asks_for():
  value = np.arange(12, dtype=np.float32).reshape(3, 4)
  init = initializers.from_array(value, "the saved prompt")
  np.testing.assert_array_equal(init(jax.random.PRNGKey(0), (3, 4)), value)
  with pytest.raises(ValueError, match=r"initial the saved prompt has shape \(3, 4\).*"
                                       r"needs \(2, 4\)"):
    init(jax.random.PRNGKey(0), (2, 4))


def test_from_prompt_file_gives_the_named_tasks_merged_prompt(tmp_path):
  saved = helpers.decomposed_set()
  path = saved.save(tmp_path / "distill.safetensors")
  init = initializers.from_prompt_file(mpt_jax.PromptSet.load(path), "t2", path)
  np.testing.assert_allclose(init(jax.random.PRNGKey(0), (4, 6)), saved.prompt("t2"),
                             rtol=1e-6)
