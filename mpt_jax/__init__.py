"""Multitask Prompt Tuning (Wang et al., ICLR 2023) for T5 in JAX/Flax."""

import os

# TensorFlow only feeds the input pipeline, on the CPU, yet its C++ start-up probes for
# CUDA and logs an ERROR on every machine without a GPU driver. Its failures that matter
# raise Python exceptions; TF_CPP_MIN_LOG_LEVEL=0 brings back the C++ logs (TF's and XLA's).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# pylint: disable=g-import-not-at-top,wrong-import-position
from mpt_jax.backbone.config import named_config
from mpt_jax.backbone.config import T5Config
from mpt_jax.backbone.loading import Backbone
from mpt_jax.backbone.loading import load_backbone
from mpt_jax.backbone.loading import random_backbone
from mpt_jax.prompts.loading import load_prompts
from mpt_jax.prompts.peft import export_peft
from mpt_jax.prompts.prompt_set import PromptSet

__all__ = ["Backbone", "Predictor", "PromptSet", "T5Config", "export_peft", "load_backbone",
           "load_prompts", "named_config", "predict", "random_backbone"]


def __getattr__(name):
  """`predict` and `Predictor`, imported on first use: they bring in seqio and TensorFlow,
  which the rest of the API does without."""
  if name in ("predict", "Predictor"):
    from mpt_jax import inference  # pylint: disable=g-import-not-at-top
    return getattr(inference, name)
  raise AttributeError(f"module 'mpt_jax' has no attribute {name!r}")
