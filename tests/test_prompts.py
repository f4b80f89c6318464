"""Prompt modules, initialisers and prompt files."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mpt_jax
from mpt_jax import network
from mpt_jax import prompt_init
from mpt_jax import prompts
from mpt_jax.io.prompt_file import PromptSet


def _init(module, task_ids):
  variables = module.init(jax.random.PRNGKey(0), jnp.asarray(task_ids))
  return variables["params"], variables["params_axes"]


def test_decomposed_prompt_is_shared_times_low_rank_product():
  module = prompts.DecomposedPrompt(num_tasks=3, length=5, embed_dim=8, rank=2,
                                    cols_init=jax.nn.initializers.normal(1.0),
                                    rows_init=jax.nn.initializers.normal(1.0))
  params, axes = _init(module, [0])
  out = module.apply({"params": params}, jnp.array([2, 0, 2]))
  p, u, v = (np.asarray(params[k]) for k in (prompts.SHARED, prompts.TASK_COLS,
                                             prompts.TASK_ROWS))
  for i, task in enumerate([2, 0, 2]):
    np.testing.assert_allclose(out[i], p * (u[task] @ v[task]), rtol=1e-5)
  assert axes[prompts.TASK_COLS + "_axes"].names == ("tasks", "prompt", "rank")
  assert axes[prompts.TASK_ROWS + "_axes"].names == ("tasks", "rank", "embed")


def test_rank_one_is_the_papers_outer_product():
  module = prompts.DecomposedPrompt(num_tasks=2, length=4, embed_dim=6, rank=1,
                                    cols_init=jax.nn.initializers.normal(1.0),
                                    rows_init=jax.nn.initializers.normal(1.0))
  params, _ = _init(module, [0])
  u, v = params[prompts.TASK_COLS][1, :, 0], params[prompts.TASK_ROWS][1, 0]
  expected = params[prompts.SHARED] * np.outer(u, v)
  np.testing.assert_allclose(module.apply({"params": params}, jnp.array([1]))[0], expected,
                             rtol=1e-6)


def test_default_factors_start_every_task_at_the_shared_prompt():
  module = prompts.DecomposedPrompt(num_tasks=3, length=4, embed_dim=6, rank=3)
  params, _ = _init(module, [0])
  out = module.apply({"params": params}, jnp.array([0, 1, 2]))
  for row in out:
    np.testing.assert_allclose(row, params[prompts.SHARED], rtol=1e-6)


def test_bank_gives_each_task_its_own_prompt():
  bank = prompts.PromptBank(num_tasks=3, length=4, embed_dim=6)
  params, axes = _init(bank, [0])
  table = params["prompts"]
  assert not np.allclose(table[0], table[1])  # each task drew its own init
  out = bank.apply({"params": params}, jnp.array([1, 1, 0]))
  np.testing.assert_array_equal(out, table[np.array([1, 1, 0])])
  assert axes["prompts_axes"].names == ("tasks", "prompt", "embed")


def test_single_prompt_broadcasts_over_the_batch():
  single = prompts.SinglePrompt(length=4, embed_dim=6)
  params, _ = _init(single, [0])
  out = single.apply({"params": params}, jnp.array([0, 0, 0]))
  assert out.shape == (3, 4, 6)
  assert np.all(np.abs(params["prompt"]) <= 0.5)


def test_a_batch_mixing_task_ids_prompts_each_example_with_its_own_task(hf_t5_1_1,
                                                                        reference):
  config = hf_t5_1_1.config
  net = network.PromptedT5(config, prompt=prompts.PromptBank(3, 4, config.d_model))
  enc, dec = reference["encoder_input_tokens"], reference["decoder_input_tokens"]
  variables = net.init(jax.random.PRNGKey(0), enc, dec, task_ids=jnp.zeros(3, jnp.int32))
  params = {**variables["params"], **hf_t5_1_1.params}
  task_ids = np.array([2, 0, 1])
  mixed = net.apply({"params": params}, enc, dec, task_ids=task_ids)
  for i, task in enumerate(task_ids):
    alone = hf_t5_1_1.logits(enc[i:i + 1], dec[i:i + 1], params["prompt"]["prompts"][task])
    np.testing.assert_allclose(mixed[i:i + 1], alone, atol=1e-5)


def test_task_ids_are_checked_on_the_host():
  prompts.check_task_ids(np.array([0, 2, 1]), 3)
  with pytest.raises(ValueError, match=r"task_ids \[3, 7\] are out of range.*\[0, 2\]"):
    prompts.check_task_ids(np.array([0, 3, 7]), 3, ["a", "b", "c"])
  with pytest.raises(ValueError, match="out of range"):
    prompts.check_task_ids(np.array([-1]), 3)


def test_sampled_vocab_rows_come_from_the_first_ids():
  embedding = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
  init = prompt_init.sampled_vocab(embedding, first_n=10)
  rows = np.asarray(init(jax.random.PRNGKey(3), (20, 6)))
  for row in rows:
    distances = np.abs(embedding - row).sum(axis=1)
    assert distances.min() == 0 and distances.argmin() < 10


def test_class_label_init_starts_with_label_embeddings():
  embedding = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
  init = prompt_init.class_labels(embedding, [[3, 4], [9]], first_n=10)
  value = np.asarray(init(jax.random.PRNGKey(0), (5, 6)))
  np.testing.assert_allclose(value[0], embedding[[3, 4]].mean(axis=0), rtol=1e-6)
  np.testing.assert_allclose(value[1], embedding[9], rtol=1e-6)
  with pytest.raises(ValueError, match="shorter than the 2 class labels"):
    init(jax.random.PRNGKey(0), (1, 6))


def _decomposed_set(num_tasks=3, l=4, d=6, r=2, seed=0):
  rng = np.random.default_rng(seed)
  arrays = {prompts.SHARED: rng.normal(size=(l, d)),
            prompts.TASK_COLS: rng.normal(size=(num_tasks, l, r)),
            prompts.TASK_ROWS: rng.normal(size=(num_tasks, r, d))}
  return PromptSet("decomposed", arrays, [f"t{i}" for i in range(num_tasks)],
                   backbone_config={"d_model": d}, metadata={"step": 7})


def test_from_source_gives_the_shared_prompt_and_mean_factors():
  source = _decomposed_set()
  inits = prompt_init.from_source(source, num_tasks=2)
  module = prompts.DecomposedPrompt(num_tasks=2, length=4, embed_dim=6, rank=2, **inits)
  params, _ = _init(module, [0])
  np.testing.assert_allclose(params[prompts.SHARED], source.arrays[prompts.SHARED])
  for key in (prompts.TASK_COLS, prompts.TASK_ROWS):
    for task in range(2):
      np.testing.assert_allclose(params[key][task], source.arrays[key].mean(axis=0),
                                 rtol=1e-6)
  with pytest.raises(ValueError, match=r"P\* has shape \(4, 6\).*needs \(5, 6\)"):
    prompts.DecomposedPrompt(2, 5, 6, 2, **inits).init(jax.random.PRNGKey(0),
                                                       jnp.array([0]))


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_prompt_files_round_trip(tmp_path, suffix):
  original = _decomposed_set()
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
  prompt_set = _decomposed_set()
  with pytest.raises(ValueError, match=r"Unknown task 't9'.*has \['t0', 't1', 't2'\]. Did you mean"):
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
