"""The prompted T5: each example prompted by its own task, the teacher prompt beside the
student's, and the hidden states distillation compares."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpt_jax.model import network
from mpt_jax.prompts import modules as prompts


def _init(net, backbone, reference):
  """(encoder tokens, decoder tokens, variables, backbone + prompt params) of `net`."""
  enc, dec = reference["encoder_input_tokens"], reference["decoder_input_tokens"]
  variables = net.init(jax.random.PRNGKey(0), enc, dec, task_ids=jnp.zeros(3, jnp.int32))
  return enc, dec, variables, {**variables["params"], **backbone.params}


def test_a_batch_mixing_task_ids_prompts_each_example_with_its_own_task(hf_t5_1_1,
                                                                        reference):
  config = hf_t5_1_1.config
  net = network.PromptedT5(config, prompt=prompts.PromptBank(3, 4, config.d_model))
  enc, dec, variables, params = _init(net, hf_t5_1_1, reference)
  task_ids = np.array([2, 0, 1])
  mixed = net.apply({"params": params}, enc, dec, task_ids=task_ids)
  for i, task in enumerate(task_ids):
    alone = hf_t5_1_1.logits(enc[i:i + 1], dec[i:i + 1], params["prompt"]["prompts"][task])
    np.testing.assert_allclose(mixed[i:i + 1], alone, atol=1e-5)


def _teacher_network(config):
  random = jax.nn.initializers.normal(1.0)
  # Different lengths tell the two prompt trees apart.
  return network.PromptedT5(
      config, prompt=prompts.PromptBank(3, 4, config.d_model, initializer=random),
      teacher_prompt=prompts.PromptBank(3, 2, config.d_model, initializer=random))


def test_init_creates_both_prompt_trees_and_use_teacher_switches_the_prompt(hf_t5_1_1,
                                                                           reference):
  config = hf_t5_1_1.config
  net = _teacher_network(config)
  enc, dec, variables, params = _init(net, hf_t5_1_1, reference)
  assert variables["params"]["prompt"]["prompts"].shape == (3, 4, config.d_model)
  assert variables["params"]["teacher_prompt"]["prompts"].shape == (3, 2, config.d_model)
  assert set(variables["params_axes"]) >= {"prompt", "teacher_prompt"}
  task_ids = np.array([2, 0, 1])
  student = net.apply({"params": params}, enc, dec, task_ids=task_ids)
  teacher = net.apply({"params": params}, enc, dec, task_ids=task_ids, use_teacher=True)
  np.testing.assert_allclose(
      student, hf_t5_1_1.logits(enc, dec, params["prompt"]["prompts"][task_ids]), atol=1e-4)
  np.testing.assert_allclose(
      teacher, hf_t5_1_1.logits(enc, dec, params["teacher_prompt"]["prompts"][task_ids]),
      atol=1e-4)
  assert np.abs(np.asarray(student) - np.asarray(teacher)).max() > 1e-3


def test_use_teacher_without_a_teacher_prompt_is_refused(hf_t5_1_1, reference):
  config = hf_t5_1_1.config
  net = network.PromptedT5(config, prompt=prompts.PromptBank(3, 4, config.d_model))
  enc, dec, variables, params = _init(net, hf_t5_1_1, reference)
  assert "teacher_prompt" not in variables["params"]
  with pytest.raises(ValueError, match="This network has no teacher prompt"):
    net.apply({"params": params}, enc, dec, task_ids=np.zeros(3, np.int32), use_teacher=True)


def test_return_hidden_gives_the_hidden_states_and_a_mask_covering_the_prompt(hf_t5_1_1,
                                                                             reference):
  config = hf_t5_1_1.config
  net = _teacher_network(config)
  enc, dec, variables, params = _init(net, hf_t5_1_1, reference)
  task_ids = np.array([1, 1, 0])
  logits, hidden = net.apply({"params": params}, enc, dec, task_ids=task_ids,
                             return_hidden=True)
  np.testing.assert_allclose(logits, net.apply({"params": params}, enc, dec,
                                               task_ids=task_ids), atol=1e-6)
  prompt = params["prompt"]["prompts"][task_ids]
  encoded = hf_t5_1_1.module.apply({"params": hf_t5_1_1.params}, enc, prompt,
                                   method=hf_t5_1_1.module.encode)
  assert hidden["encoder"].shape == (3, 4 + enc.shape[1], config.d_model)
  np.testing.assert_allclose(hidden["encoder"], encoded, atol=1e-4)
  mask = np.asarray(hidden["encoder_mask"])
  assert mask.shape == (3, 4 + enc.shape[1])
  assert mask[:, :4].all()
  np.testing.assert_array_equal(mask[:, 4:], enc > 0)
  # The decoder's hidden states are what its (untied) output layer reads.
  assert hidden["decoder"].shape == dec.shape + (config.d_model,)
  kernel = hf_t5_1_1.params["decoder"]["logits_dense"]["kernel"]
  np.testing.assert_allclose(np.asarray(hidden["decoder"]) @ kernel, logits, atol=1e-4)
  # With the teacher, the encoder mask covers the teacher's (shorter) prompt instead.
  _, teacher = net.apply({"params": params}, enc, dec, task_ids=task_ids, use_teacher=True,
                         return_hidden=True)
  assert teacher["encoder"].shape == (3, 2 + enc.shape[1], config.d_model)
  np.testing.assert_array_equal(np.asarray(teacher["encoder_mask"])[:, 2:], enc > 0)
