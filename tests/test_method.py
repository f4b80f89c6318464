"""The MPT method on tiny models: the distillation loss (Eq. 3-5), where gradients go,
stochastic task sampling, the adaptation initialisation and two-speed learning rates."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mpt_jax
from mpt_jax import inputs
from mpt_jax import models
from mpt_jax import optim
from mpt_jax import prompt_config
from mpt_jax import prompt_init
from mpt_jax import prompts
from mpt_jax import trainer
from mpt_jax.io.prompt_file import PromptSet
from tests.conftest import FIXTURES

NUM_TASKS, LENGTH = 3, 4


@pytest.fixture(scope="module")
def backbone():
  return mpt_jax.load_backbone(FIXTURES / "hf_t5_1_1")


def _batch(reference):
  targets = np.array([[5, 6, 1, 0, 0], [7, 1, 0, 0, 0], [8, 9, 10, 1, 0]], np.int32)
  return {"encoder_input_tokens": reference["encoder_input_tokens"],
          "decoder_input_tokens": np.pad(targets[:, :-1], ((0, 0), (1, 0))),
          "decoder_target_tokens": targets,
          "decoder_loss_weights": (targets > 0).astype(np.int32),
          "task_ids": np.array([2, 0, 1], np.int32)}


def _distillation(backbone, student=None, **kwargs):
  d = backbone.config.d_model
  random = jax.nn.initializers.normal(1.0)
  student = student or prompts.DecomposedPrompt(NUM_TASKS, LENGTH, d, rank=2,
                                                shared_init=random, cols_init=random,
                                                rows_init=random)
  teacher = prompts.PromptBank(NUM_TASKS, LENGTH, d, initializer=random)
  model = models.DistillationModel(backbone.config, student, teacher, **kwargs)
  ids = jnp.zeros((1,), jnp.int32)
  params = {**backbone.params,
            "prompt": student.init(jax.random.PRNGKey(1), ids)["params"],
            "teacher_prompt": teacher.init(jax.random.PRNGKey(2), ids)["params"]}
  return model, params


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_distillation_loss_matches_eq_3_to_5(backbone, reference):
  model, params = _distillation(backbone, temperature=2.0, z_loss=0.0)
  batch = _batch(reference)
  _, metrics = model.loss_fn(params, batch)

  def outputs(use_teacher):
    logits, hidden = model.network.apply(
        {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
        None, batch["task_ids"], use_teacher=use_teacher, return_hidden=True)
    return np.asarray(logits, np.float64), jax.tree.map(np.asarray, hidden)

  (s_logits, s_hidden), (t_logits, t_hidden) = outputs(False), outputs(True)
  targets, weights = batch["decoder_target_tokens"], batch["decoder_loss_weights"]
  tokens = weights.sum()
  log_p = _log_softmax(s_logits)
  task_loss = -(np.take_along_axis(log_p, targets[..., None], -1)[..., 0] * weights).sum()
  task_loss /= tokens
  t_soft, s_soft = _log_softmax(t_logits / 2.0), _log_softmax(s_logits / 2.0)
  kl = 4.0 * ((np.exp(t_soft) * (t_soft - s_soft)).sum(-1) * weights).sum() / tokens
  real = batch["encoder_input_tokens"] > 0  # the input tokens, not the prompt positions
  enc_error = ((s_hidden["encoder"][:, LENGTH:] - t_hidden["encoder"][:, LENGTH:]) ** 2)
  encoder_mse = (enc_error.mean(-1) * real).sum() / real.sum()
  dec_error = ((s_hidden["decoder"] - t_hidden["decoder"]) ** 2).mean(-1)
  decoder_mse = (dec_error * weights).sum() / tokens
  total = task_loss + 0.9 * (kl + encoder_mse + decoder_mse)
  for name, expected in [("task_loss", task_loss), ("kl", kl), ("encoder_mse", encoder_mse),
                         ("decoder_mse", decoder_mse), ("loss", total)]:
    np.testing.assert_allclose(float(metrics[name]), expected, rtol=2e-4, err_msg=name)
  assert kl > 0 and encoder_mse > 0 and decoder_mse > 0


def test_a_teachers_kl_and_hidden_error_to_itself_are_zero(backbone, reference):
  bank = np.random.default_rng(0).normal(size=(NUM_TASKS, LENGTH, backbone.config.d_model))
  same = prompts.PromptBank(NUM_TASKS, LENGTH, backbone.config.d_model,
                            bank_init=prompt_init.from_array(bank))
  model, params = _distillation(backbone, student=same)
  params["teacher_prompt"] = params["prompt"]
  _, metrics = model.loss_fn(params, _batch(reference))
  assert float(metrics["kl"]) == pytest.approx(0.0, abs=1e-6)
  assert float(metrics["hidden_mse"]) == pytest.approx(0.0, abs=1e-10)
  np.testing.assert_allclose(float(metrics["loss"]), float(metrics["task_loss"]), rtol=1e-6)


def test_gradients_reach_p_u_v_and_never_the_teacher_or_backbone(backbone, reference):
  model, params = _distillation(backbone)
  batch = _batch(reference)
  grads = jax.grad(lambda p: model.loss_fn(p, batch)[0])(params)
  for name in (prompts.SHARED, prompts.TASK_COLS, prompts.TASK_ROWS):
    assert float(jnp.abs(grads["prompt"][name]).max()) > 0, name
  # The teacher runs under stop_gradient: nothing flows back to it.
  assert float(jnp.abs(grads["teacher_prompt"]["prompts"]).max()) == 0.0
  # The training step differentiates the trainable tree only and leaves the rest as is.
  optimizer = optim.make_optimizer(name="adam", learning_rate=0.1)
  trainable, frozen = models.trainable(params), models.frozen(params)
  state = trainer.TrainState(jnp.int32(0), trainable, optimizer.init(trainable),
                             jax.random.PRNGKey(0))
  step = jax.jit(trainer.make_train_step(model, optimizer, use_dropout=False))
  new_state, _ = step(state, frozen, batch)
  for name in (prompts.SHARED, prompts.TASK_COLS, prompts.TASK_ROWS):
    assert not np.allclose(new_state.params["prompt"][name], trainable["prompt"][name])
  assert set(new_state.params) == {"prompt"}
  assert set(jax.tree.leaves(jax.tree.map(lambda _: 1, new_state.opt_state))) <= {1}
  opt_leaves = jax.tree.leaves(new_state.opt_state)
  assert sum(x.size for x in opt_leaves) < 3 * sum(x.size for x in jax.tree.leaves(trainable))


def test_stochastic_task_sampling_draws_k_tasks_and_only_their_examples():
  import tasks.synthetic as synthetic  # pylint: disable=g-import-not-at-top
  names = list(synthetic.SOURCE_TASKS)
  batches = inputs.MixedBatches(names, np.ones(len(names)), {"inputs": 101, "targets": 16},
                                batch_size=16, seed=3, stochastic_task_sampling=True)
  counts = set()
  for step in range(12):
    chosen = batches.tasks_for_step(step)
    assert 2 <= len(chosen) <= len(names) and len(set(chosen)) == len(chosen)
    counts.add(len(chosen))
    batch = next(batches)
    assert set(batch["task_ids"].tolist()) <= set(chosen.tolist())
  assert len(counts) >= 3  # K really varies over [2, κ]
  every = inputs.MixedBatches(names, np.ones(len(names)), {"inputs": 8, "targets": 4}, 16)
  assert len(every.tasks_for_step(0)) == len(names)
  with pytest.raises(ValueError, match="draws K from \\[2, κ\\]"):
    inputs.MixedBatches(names[:1], np.ones(1), {"inputs": 8, "targets": 4}, 16,
                        stochastic_task_sampling=True)


class _FakeBackbone:
  def __init__(self, d):
    self.config = mpt_jax.T5Config(d_model=d)


def test_single_prompt_from_a_file_gives_every_task_the_named_source_prompt(tmp_path):
  source, path = _source_file(tmp_path)
  module = prompt_config.single_prompt(_FakeBackbone(6), ["t0", "t1"], length=LENGTH,
                                       init="file", init_prompts=str(path), init_task="s3")
  ids = jnp.array([0, 1], jnp.int32)
  out = np.asarray(module.apply(module.init(jax.random.PRNGKey(0), ids), ids))
  np.testing.assert_allclose(out, np.stack([source.prompt("s3")] * 2), rtol=1e-5)


def _source_file(tmp_path, d=6, rank=2):
  rng = np.random.default_rng(0)
  source = PromptSet("decomposed", {prompts.SHARED: rng.normal(size=(LENGTH, d)),
                                    prompts.TASK_COLS: rng.normal(size=(6, LENGTH, rank)),
                                    prompts.TASK_ROWS: rng.normal(size=(6, rank, d))},
                     [f"s{i}" for i in range(6)])
  return source, source.save(tmp_path / "distill.safetensors")


@pytest.mark.parametrize("shared_per_task", [False, True])
def test_adaptation_starts_at_p_star_and_the_mean_u_v(tmp_path, shared_per_task):
  source, path = _source_file(tmp_path)
  module = prompt_config.decomposed_prompt(_FakeBackbone(6), ["t0", "t1"], length=LENGTH,
                                           source=str(path), shared_per_task=shared_per_task)
  assert module.rank == 2
  params = module.init(jax.random.PRNGKey(0), jnp.zeros((1,), jnp.int32))["params"]
  shared = np.asarray(params[prompts.SHARED])
  expected_shared = source.arrays[prompts.SHARED]
  if shared_per_task:
    assert shared.shape == (2, LENGTH, 6)
    expected_shared = np.stack([expected_shared] * 2)
  np.testing.assert_allclose(shared, expected_shared, rtol=1e-6)
  for name in (prompts.TASK_COLS, prompts.TASK_ROWS):
    mean = source.arrays[name].mean(axis=0)
    np.testing.assert_allclose(params[name], np.stack([mean, mean]), rtol=1e-6)
  prompt = module.apply({"params": params}, jnp.array([1]))[0]
  np.testing.assert_allclose(prompt, source.arrays[prompts.SHARED] * (
      source.arrays[prompts.TASK_COLS].mean(0) @ source.arrays[prompts.TASK_ROWS].mean(0)),
                             rtol=1e-5)


def test_two_speed_learning_rates_apply_to_the_right_parameters():
  params = {"prompt": {prompts.SHARED: jnp.ones((LENGTH, 6)),
                       prompts.TASK_COLS: jnp.ones((2, LENGTH, 1)),
                       prompts.TASK_ROWS: jnp.ones((2, 1, 6))}}
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.5), params)
  optimizer = optim.make_optimizer(
      name="adam", learning_rate=1.0, clip_norm=None,
      group_learning_rates={prompts.SHARED: 0.3, prompts.TASK_COLS: 0.4,
                            prompts.TASK_ROWS: 0.4})
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  moved = jax.tree.map(lambda u: float(jnp.abs(u).max()), updates)["prompt"]
  # Adam's first step moves every parameter by its learning rate.
  assert moved[prompts.SHARED] == pytest.approx(0.3, rel=1e-4)
  assert moved[prompts.TASK_COLS] == pytest.approx(0.4, rel=1e-4)
  assert moved[prompts.TASK_ROWS] == pytest.approx(0.4, rel=1e-4)
  labels = optim.group_labels(params, {prompts.SHARED: 0.3})
  assert labels["prompt"][prompts.TASK_COLS] == optim.DEFAULT_GROUP


def test_per_task_p_star_exports_one_peft_adapter_per_task(tmp_path):
  rng = np.random.default_rng(0)
  per_task = PromptSet("decomposed", {prompts.SHARED: rng.normal(size=(2, LENGTH, 6)),
                                      prompts.TASK_COLS: rng.normal(size=(2, LENGTH, 1)),
                                      prompts.TASK_ROWS: rng.normal(size=(2, 1, 6))},
                       ["rte", "cb"])
  assert per_task.shared_per_task
  written = mpt_jax.export_peft(per_task, tmp_path)
  assert written == [tmp_path / "rte", tmp_path / "cb"]
  for index, directory in enumerate(written):
    adapter = mpt_jax.load_prompts(directory)
    assert adapter.num_tasks == 1 and adapter.task_names == (directory.name,)
    np.testing.assert_allclose(adapter.prompt(0), per_task.prompt(index), rtol=1e-6)


def test_optax_state_exists_for_the_prompt_only(backbone):
  optimizer = optim.make_optimizer()
  prompt = {"prompt": {"prompts": jnp.zeros((NUM_TASKS, LENGTH, backbone.config.d_model))}}
  state_size = sum(x.size for x in jax.tree.leaves(optimizer.init(prompt)))
  backbone_size = sum(np.size(x) for x in jax.tree.leaves(backbone.params))
  assert state_size < backbone_size / 10
  assert isinstance(optimizer, optax.GradientTransformation)
