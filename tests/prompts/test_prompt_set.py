"""The prompt file: round trips in both formats, the facts it records, and its errors."""

import numpy as np
import pytest

import mpt_jax
from mpt_jax.prompts import modules as prompts
from mpt_jax.prompts.prompt_set import PromptSet
from tests import helpers


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_prompt_files_round_trip(tmp_path, suffix):
  original = helpers.decomposed_set()
  loaded = mpt_jax.load_prompts(original.save(tmp_path / f"p{suffix}"))
  assert loaded.kind == "decomposed" and loaded.task_names == ("t0", "t1", "t2")
  assert (loaded.length, loaded.embed_dim, loaded.rank) == (4, 6, 2)
  assert loaded.backbone_config == {"d_model": 6} and loaded.metadata == {"step": 7}
  for key, value in original.arrays.items():
    np.testing.assert_array_equal(loaded.arrays[key], value)
  expected = original.arrays[prompts.SHARED] * (
      original.arrays[prompts.TASK_COLS][1] @ original.arrays[prompts.TASK_ROWS][1])
  np.testing.assert_allclose(loaded.prompt("t1"), expected, rtol=1e-5)
  np.testing.assert_allclose(loaded.prompt(1), expected, rtol=1e-5)


def test_prompt_file_errors(tmp_path):
  prompt_set = helpers.decomposed_set()
  with pytest.raises(ValueError,
                     match=r"Unknown task 't9'.*has \['t0', 't1', 't2'\]. Did you mean"):
    prompt_set.prompt("t9")
  with pytest.raises(ValueError, match="Task id 3 is out of range"):
    prompt_set.prompt(3)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    mpt_jax.load_prompts(tmp_path / "missing.safetensors")
  with pytest.raises(ValueError, match="ends in .safetensors or .npz"):
    prompt_set.save(tmp_path / "p.pt")
  with pytest.raises(ValueError, match="Inconsistent decomposed prompt"):
    PromptSet("decomposed", {prompts.SHARED: np.zeros((4, 6)),
                             prompts.TASK_COLS: np.zeros((2, 5, 1)),
                             prompts.TASK_ROWS: np.zeros((2, 1, 6))}, ["a", "b"])
  with pytest.raises(ValueError, match="3 task names for 2 prompts"):
    PromptSet("bank", {"prompts": np.zeros((2, 4, 6))}, ["a", "b", "c"])


@pytest.mark.parametrize("module", [
    prompts.SinglePrompt(4, 6), prompts.PromptBank(3, 4, 6),
    prompts.DecomposedPrompt(3, 4, 6, rank=2)])
def test_a_prompt_set_made_from_a_module_records_the_modules_kind(module):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  params = module.init(jax.random.PRNGKey(0), jnp.zeros((1,), jnp.int32))["params"]
  saved = PromptSet.from_module(module, jax.tree.map(np.asarray, params),
                                ["a", "b", "c"][:1 if module.kind == "single" else 3])
  assert saved.kind == module.kind
  ids = jnp.arange(saved.num_tasks)
  np.testing.assert_allclose(saved.merged(), module.apply({"params": params}, ids),
                             rtol=1e-6)
