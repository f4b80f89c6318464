"""The backbone's parameter tree: t5x's names and logical axes from one abstract init,
and the check every checkpoint reader runs against it."""

import jax
import numpy as np
import pytest

import mpt_jax
from mpt_jax.backbone import params as backbone_params

CONFIG = mpt_jax.named_config("t5_1_1_tiny", vocab_size=64)


def test_parameter_names_and_axes_follow_t5x():
  variables = backbone_params.abstract_variables(CONFIG)
  axes = jax.tree.map(lambda a: a.names, variables["params_axes"],
                      is_leaf=lambda x: hasattr(x, "names"))
  assert axes["token_embedder"]["embedding_axes"] == ("vocab", "embed")
  layer = axes["encoder"]["layers_0"]
  assert layer["attention"]["query"]["kernel_axes"] == ("embed", "joined_kv")
  assert layer["attention"]["out"]["kernel_axes"] == ("joined_kv", "embed")
  assert layer["mlp"]["wi_0"]["kernel_axes"] == ("embed", "mlp")
  assert axes["encoder"]["relpos_bias"]["rel_embedding_axes"] == ("heads", "relpos_buckets")
  assert axes["decoder"]["logits_dense"]["kernel_axes"] == ("embed", "vocab")
  assert "encoder_decoder_attention" in variables["params"]["decoder"]["layers_0"]


def test_abstract_shapes_are_those_of_a_real_init():
  real = mpt_jax.random_backbone(CONFIG).params
  shapes = backbone_params.expected_shapes(CONFIG)
  flat_real = {"/".join(k.key for k in path): leaf.shape
               for path, leaf in jax.tree_util.tree_leaves_with_path(real)}
  assert shapes == flat_real
  leaves = jax.tree.leaves(backbone_params.abstract_variables(CONFIG)["params"])
  assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves)


def test_check_params_lists_every_missing_unexpected_and_misshaped_parameter():
  flat = {name: np.zeros(shape, np.float32)
          for name, shape in backbone_params.expected_shapes(CONFIG).items()}
  backbone_params.check_params(flat, CONFIG, "ok")  # a complete tree passes
  del flat["encoder/encoder_norm/scale"]
  flat["encoder/extra/kernel"] = np.zeros((2, 2), np.float32)
  flat["token_embedder/embedding"] = np.zeros((65, CONFIG.d_model), np.float32)
  with pytest.raises(ValueError) as error:
    backbone_params.check_params(flat, CONFIG, "/ckpt")
  message = str(error.value)
  assert "The checkpoint at /ckpt does not match" in message
  assert f"missing encoder/encoder_norm/scale ({CONFIG.d_model},)" in message
  assert "unexpected encoder/extra/kernel (2, 2)" in message
  assert (f"token_embedder/embedding: checkpoint has (65, {CONFIG.d_model}), the config "
          f"needs (64, {CONFIG.d_model})") in message
