"""Multitask Prompt Tuning (Wang et al., ICLR 2023) for T5 in JAX/Flax."""

from mpt_jax.backbone.config import named_config
from mpt_jax.backbone.config import T5Config
from mpt_jax.backbone.loading import Backbone
from mpt_jax.backbone.loading import load_backbone
from mpt_jax.backbone.loading import random_backbone
from mpt_jax.prompts.loading import load_prompts
from mpt_jax.prompts.peft import export_peft
from mpt_jax.prompts.prompt_set import PromptSet

__all__ = ["Backbone", "PromptSet", "T5Config", "export_peft", "load_backbone",
           "load_prompts", "named_config", "random_backbone"]
