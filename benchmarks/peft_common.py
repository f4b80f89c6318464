"""The PyTorch side's shared set-up: the T5-small-shaped HuggingFace model under a PEFT
MultitaskPromptTuning adapter, and its random inputs, as `common.py` builds them for JAX."""

import numpy as np
import peft
import torch
import transformers

BATCH, INPUT_LENGTH, PROMPT_LENGTH = 8, 256, 100


def prompted_model():
  """T5 1.0 layout, random weights (seed 0), a rank-1 one-task encoder prompt; 2 threads."""
  torch.manual_seed(0)
  torch.set_num_threads(2)
  config = transformers.T5Config(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048,
                                 num_layers=6, num_decoder_layers=6, num_heads=8,
                                 feed_forward_proj="relu", dropout_rate=0.0,
                                 decoder_start_token_id=0)
  prompt_config = peft.MultitaskPromptTuningConfig(
      task_type=peft.TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=PROMPT_LENGTH, num_tasks=1,
      num_ranks=1, num_transformer_submodules=1)
  return peft.get_peft_model(transformers.T5ForConditionalGeneration(config), prompt_config)


def inputs(rng: np.random.Generator):
  """(input ids, attention mask, task ids) of one batch, without padding."""
  ids = torch.tensor(rng.integers(2, 32000, size=(BATCH, INPUT_LENGTH)))
  return ids, torch.ones_like(ids), torch.zeros(BATCH, dtype=torch.long)


def versions() -> dict:
  return {"torch": torch.__version__, "transformers": transformers.__version__,
          "peft": peft.__version__}
