"""Multitask Prompt Tuning (Wang et al., ICLR 2023) for T5 in JAX/Flax."""

from mpt_jax.api import Backbone
from mpt_jax.api import export_peft
from mpt_jax.api import load_backbone
from mpt_jax.api import load_prompts
from mpt_jax.api import random_backbone
from mpt_jax.config import T5Config
from mpt_jax.config import named_config
from mpt_jax.io.prompt_file import PromptSet

__all__ = ["Backbone", "PromptSet", "T5Config", "export_peft", "load_backbone",
           "load_prompts", "named_config", "random_backbone"]
