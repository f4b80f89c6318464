"""The prompt file: round trips in both formats, the facts it records, and its errors."""

import json

import numpy as np
import pytest
import safetensors
import safetensors.numpy

import mpt_jax
from mpt_jax import arrays as arrays_lib
from mpt_jax.prompts import modules as prompts
from mpt_jax.prompts.prompt_set import PromptFileError
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


def _edit_arrays(path, edit, recompute_checksum=False):
  """Rewrites a safetensors prompt file's arrays with `edit`, keeping its header (with
  a checksum of the edited arrays if `recompute_checksum`, as a buggy writer would)."""
  with safetensors.safe_open(str(path), framework="numpy") as f:
    header = json.loads(f.metadata()["mpt_jax"])
    arrays = {k: f.get_tensor(k) for k in f.keys()}
  edit(arrays)
  if recompute_checksum:
    header["sha256"] = arrays_lib.sha256(arrays)
  safetensors.numpy.save_file(arrays, str(path), metadata={"mpt_jax": json.dumps(header)})


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_a_truncated_prompt_file_is_refused_by_name(tmp_path, suffix):
  path = helpers.decomposed_set().save(tmp_path / f"p{suffix}")
  path.write_bytes(path.read_bytes()[:-40])
  with pytest.raises(PromptFileError, match=rf"Prompt file {path} cannot be read .*truncated"):
    PromptSet.load(path)


def test_changed_values_fail_the_files_checksum(tmp_path):
  path = helpers.decomposed_set().save(tmp_path / "p.safetensors")
  _edit_arrays(path, lambda a: a[prompts.SHARED].__setitem__((0, 0), 123.0))
  with pytest.raises(PromptFileError, match=rf"{path} is damaged.*SHA-256"):
    PromptSet.load(path)


def test_prompts_with_nan_are_never_saved_and_refused_on_load(tmp_path):
  prompt_set = helpers.decomposed_set()
  prompt_set.arrays[prompts.SHARED][1, 2] = np.nan
  with pytest.raises(ValueError, match=r"Refusing to save prompts with NaN.*shared_prompt "
                                       r"\(1 of 24 values\)"):
    prompt_set.save(tmp_path / "nan.safetensors")
  assert not (tmp_path / "nan.safetensors").exists()
  path = helpers.decomposed_set().save(tmp_path / "p.safetensors")
  def poison(arrays):
    arrays[prompts.TASK_ROWS][0, 0, 0] = np.inf
  _edit_arrays(path, poison, recompute_checksum=True)
  with pytest.raises(PromptFileError, match=rf"{path} holds NaN or inf in task_rows \(1 of"):
    PromptSet.load(path)


def test_a_file_of_wrong_shapes_is_refused_by_name(tmp_path):
  path = helpers.decomposed_set().save(tmp_path / "p.safetensors")
  _edit_arrays(path, lambda a: a.__setitem__(prompts.TASK_COLS, a[prompts.TASK_COLS][:, :3].copy()),
               recompute_checksum=True)
  with pytest.raises(PromptFileError, match=rf"Prompt file {path}: Inconsistent decomposed"):
    PromptSet.load(path)


def test_a_prompt_set_of_strided_views_saves_their_values(tmp_path):
  # safetensors writes a non-contiguous numpy view's underlying buffer, not its values.
  bank = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)[:, :4]
  saved = PromptSet("bank", {"prompts": bank}, ["a", "b"]).save(tmp_path / "p.safetensors")
  np.testing.assert_array_equal(PromptSet.load(saved).arrays["prompts"], bank)


def test_only_a_decomposed_prompt_changes_when_merged():
  decomposed = helpers.decomposed_set()
  merged = decomposed.to_merged()
  assert merged.kind == "merged" and merged.task_names == decomposed.task_names
  np.testing.assert_allclose(merged.merged(), decomposed.merged(), rtol=1e-6)
  bank = PromptSet("bank", {"prompts": np.ones((2, 3, 4))}, ["a", "b"])
  assert bank.to_merged() is bank and merged.to_merged() is merged
