"""Stage 0: pretraining trains every backbone parameter on a mixture and saves a
HuggingFace T5 directory, which later calls reuse instead of training again."""

import jax
import numpy as np
import pytest

import mpt_jax
from mpt_jax.backbone.config import named_config
from mpt_jax.pipeline import pretraining
import tasks.synthetic as synthetic

TINY = {"vocab_size": 384, "d_model": 16, "d_kv": 8, "num_heads": 2, "d_ff": 32,
        "num_layers": 1, "num_decoder_layers": 1, "dropout_rate": 0.0}


def _pretrain(model_dir, steps=3):
  return pretraining.pretrain(
      model_dir, config_name="t5_1_1_tiny", config_overrides=TINY,
      mixture_or_task_name=synthetic.PRETRAIN_MIXTURE,
      task_feature_lengths={"inputs": synthetic.SEQUENCE_LENGTHS["inputs"],
                            "targets": synthetic.PRETRAIN_TARGET_TOKENS},
      batch_size=4, train_steps=steps, warmup_steps=1, log_period=1)


def test_pretrain_trains_every_parameter_and_saves_a_loadable_backbone(tmp_path):
  model_dir = _pretrain(tmp_path / "backbone")
  loaded = mpt_jax.load_backbone(str(model_dir))
  assert loaded.config == named_config("t5_1_1_tiny", **TINY)
  start = mpt_jax.random_backbone(loaded.config, 0).params
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), start, loaded.params)
  assert all(jax.tree.leaves(changed))
  assert not (tmp_path / "backbone.tmp").exists()


def test_a_finished_backbone_is_reused_not_retrained(tmp_path):
  model_dir = _pretrain(tmp_path / "backbone", steps=2)
  weights = model_dir / "model.safetensors"
  before = weights.read_bytes()
  assert pretraining.is_pretrained(model_dir)
  assert _pretrain(tmp_path / "backbone", steps=5) == model_dir
  assert weights.read_bytes() == before


def test_too_few_steps_for_the_warmup_are_refused(tmp_path):
  with pytest.raises(ValueError, match=r"train_steps \(1\) must exceed .*warmup_steps \(1\)"):
    _pretrain(tmp_path / "backbone", steps=1)
  assert not (tmp_path / "backbone").exists()
