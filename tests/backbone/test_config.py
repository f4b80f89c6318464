"""The named sizes of T5 1.0 and 1.1."""

import numpy as np
import pytest

import mpt_jax
from mpt_jax.backbone import params as backbone_params


# Parameter counts HuggingFace reports for the published checkpoints.
@pytest.mark.parametrize("name,count", [
    ("t5_1_0_small", 60_506_624), ("t5_1_0_base", 222_903_552),
    ("t5_1_1_small", 76_961_152), ("t5_1_1_base", 247_577_856),
    ("t5_1_1_large", 783_150_080),
])
def test_named_sizes_match_published_parameter_counts(name, count):
  shapes = backbone_params.expected_shapes(mpt_jax.named_config(name))
  assert sum(int(np.prod(s)) for s in shapes.values()) == count


def test_every_named_config_builds():
  for version in ("t5_1_0", "t5_1_1"):
    for size in ("tiny", "small", "base", "large", "xl", "xxl"):
      shapes = backbone_params.expected_shapes(mpt_jax.named_config(f"{version}_{size}"))
      assert ("decoder/logits_dense/kernel" in shapes) == (version == "t5_1_1")
  with pytest.raises(ValueError, match="Unknown backbone config 't5_1_1_huge'"):
    mpt_jax.named_config("t5_1_1_huge")
