"""The TPU-scale options change how the network runs, never what it computes: per-layer
remat under each policy and a scan over the layer stacks give the plain network's loss,
prompt gradients and beam-search decodes; a bfloat16 frozen backbone stays within bf16 tolerance."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpt_jax.backbone import params as backbone_params
from mpt_jax.backbone.config import REMAT_POLICIES
from mpt_jax.model import decoding
from mpt_jax.model import models
from mpt_jax.prompts import modules as prompts
from mpt_jax.runtime import setup as setup_lib
from mpt_jax.runtime.configs import ModelConfig
from tests import helpers

NUM_TASKS, LENGTH = 3, 4
RANDOM = jax.nn.initializers.normal(1.0)


def _student(d):
  return prompts.DecomposedPrompt(NUM_TASKS, LENGTH, d, rank=2, shared_init=RANDOM,
                                  cols_init=RANDOM, rows_init=RANDOM)


@functools.lru_cache(maxsize=None)
def _prompt_params(d):
  ids = jnp.zeros((1,), jnp.int32)
  teacher = prompts.PromptBank(NUM_TASKS, LENGTH, d, initializer=RANDOM)
  return (_student(d).init(jax.random.PRNGKey(1), ids)["params"],
          teacher.init(jax.random.PRNGKey(2), ids)["params"])


def _distillation_model(backbone, model_config: ModelConfig):
  """The distillation model (it runs the student and the teacher) as `model_config` says,
  with the backbone in the layout and dtype that config places it in."""
  d = backbone.config.d_model
  teacher = prompts.PromptBank(NUM_TASKS, LENGTH, d, initializer=RANDOM)
  model = setup_lib.build_model(model_config, backbone.config, _student(d), ["a", "b", "c"],
                                teacher=teacher)
  frozen = setup_lib.frozen_layout(flax.core.unfreeze(backbone.params), model.config,
                                   model_config)
  student_params, teacher_params = _prompt_params(d)
  return model, {**frozen, "teacher_prompt": teacher_params}, student_params


def _loss_and_prompt_grads(model, frozen, trainable, batch):
  def loss(prompt):
    return model.loss_fn(models.merge({"prompt": prompt}, frozen), batch)[0]
  return jax.jit(jax.value_and_grad(loss))(trainable)


@pytest.fixture(scope="module")
def plain(hf_t5_1_1, reference):
  batch = helpers.toy_batch(reference)
  model, frozen, trainable = _distillation_model(hf_t5_1_1, ModelConfig(dropout_rate=0.0))
  return batch, _loss_and_prompt_grads(model, frozen, trainable, batch)


# Every policy once, each layout twice (compiling every pair would double the time).
@pytest.mark.parametrize("policy,scan", [("none", True), ("full", False),
                                         ("dots_with_no_batch_dims", True), ("dots", False)])
def test_remat_and_scan_give_the_plain_networks_loss_and_prompt_gradients(
    hf_t5_1_1, plain, policy, scan):
  assert set(REMAT_POLICIES) == {"none", "full", "dots_with_no_batch_dims", "dots"}
  batch, (plain_loss, plain_grads) = plain
  config = ModelConfig(dropout_rate=0.0, remat_policy=policy, scan_layers=scan)
  model, frozen, trainable = _distillation_model(hf_t5_1_1, config)
  assert model.config.remat_policy == policy and model.config.scan_layers == scan
  loss, grads = _loss_and_prompt_grads(model, frozen, trainable, batch)
  np.testing.assert_allclose(loss, plain_loss, rtol=1e-6)
  for name in grads:
    np.testing.assert_allclose(grads[name], plain_grads[name], rtol=1e-4, atol=1e-6,
                               err_msg=name)


def test_a_scanned_decoder_beam_searches_as_the_plain_one(hf_t5_1_1, reference):
  """Beams reorder the self-attention caches, which a scanned decoder stacks by layer."""
  batch = helpers.toy_batch(reference)
  outputs = {}
  for scan in (False, True):
    model, frozen, trainable = _distillation_model(
        hf_t5_1_1, ModelConfig(dropout_rate=0.0, scan_layers=scan))
    decode = jax.jit(lambda params, batch, model=model: model.predict_batch_with_aux(
        params, batch, 6, decoding_config=decoding.DecodingConfig(beam_size=2)))
    tokens, aux = decode(models.merge({"prompt": trainable}, frozen), batch)
    outputs[scan] = np.asarray(tokens), np.asarray(aux["scores"])
  np.testing.assert_array_equal(outputs[True][0], outputs[False][0])
  np.testing.assert_allclose(outputs[True][1], outputs[False][1], rtol=1e-5)


def test_a_bfloat16_frozen_backbone_matches_float32_within_bfloat16_tolerance(hf_t5_1_1,
                                                                               plain):
  batch, (plain_loss, plain_grads) = plain
  model, frozen, trainable = _distillation_model(
      hf_t5_1_1, ModelConfig(dropout_rate=0.0, frozen_dtype="bfloat16"))
  backbone_leaves = jax.tree.leaves({k: v for k, v in frozen.items() if k != "teacher_prompt"})
  assert {leaf.dtype for leaf in backbone_leaves} == {jnp.dtype(jnp.bfloat16)}
  loss, grads = _loss_and_prompt_grads(model, frozen, trainable, batch)
  assert loss != plain_loss  # the weights really were rounded
  np.testing.assert_allclose(loss, plain_loss, rtol=2e-2)
  for name in grads:
    cosine = np.sum(grads[name] * plain_grads[name]) / (
        np.linalg.norm(grads[name]) * np.linalg.norm(plain_grads[name]))
    assert cosine > 0.99, name


def test_scanned_parameters_round_trip_to_the_per_layer_layout(hf_t5_1_1):
  config = hf_t5_1_1.config.replace(scan_layers=True)
  per_layer = flax.core.unfreeze(hf_t5_1_1.params)
  stacked = backbone_params.stack_layers(per_layer, config)
  flat = flax.traverse_util.flatten_dict(stacked, sep="/")
  expected = flax.traverse_util.flatten_dict(
      backbone_params.abstract_variables(config)["params"], sep="/")
  assert {k: v.shape for k, v in flat.items()} == {k: v.shape for k, v in expected.items()}
  kernel = "encoder/layers/mlp/wi_0/kernel"
  np.testing.assert_array_equal(flat[kernel][1],
                                per_layer["encoder"]["layers_1"]["mlp"]["wi_0"]["kernel"])
  back = flax.traverse_util.flatten_dict(
      backbone_params.unstack_layers(stacked, config), sep="/")
  original = flax.traverse_util.flatten_dict(per_layer, sep="/")
  assert set(back) == set(original)
  for name, value in original.items():
    np.testing.assert_array_equal(back[name], value, err_msg=name)
  axes = backbone_params.abstract_variables(config)["params_axes"]
  names = flax.traverse_util.flatten_dict(
      flax.linen.partitioning.get_axis_names(axes), sep="/")
  assert tuple(names["encoder/layers/mlp/wi_0/kernel"]) == ("layers", "embed", "mlp")


def test_an_unknown_remat_policy_is_refused_naming_the_known_ones(hf_t5_1_1):
  with pytest.raises(ValueError, match=r"remat_policy='some'.*'dots'.*'full'.*'none'"):
    setup_lib.network_config(ModelConfig(remat_policy="some"), hf_t5_1_1.config)
