"""The PyTorch side of the comparison: HuggingFace T5 + PEFT MultitaskPromptTuning.

Run by `run_all.py` with the `reference` extra's interpreter; prints one JSON line.
Same shape as the JAX benchmark: T5-small-shaped random backbone (T5 1.0 layout),
batch 8, inputs 256 + a 100-vector encoder prompt, targets 8, float32, 2 threads.
A step is forward, backward (the prompt only: PEFT freezes the backbone) and an
optimiser update of the prompt parameters.
"""

import json
import resource
import time

import numpy as np
import peft
import torch
import transformers

BATCH, INPUT_LENGTH, TARGET_LENGTH, PROMPT_LENGTH = 8, 256, 8, 100


def main():
  torch.manual_seed(0)
  torch.set_num_threads(2)
  config = transformers.T5Config(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048,
                                 num_layers=6, num_decoder_layers=6, num_heads=8,
                                 feed_forward_proj="relu", dropout_rate=0.0,
                                 decoder_start_token_id=0)
  model = transformers.T5ForConditionalGeneration(config)
  prompt_config = peft.MultitaskPromptTuningConfig(
      task_type=peft.TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=PROMPT_LENGTH, num_tasks=1,
      num_ranks=1, num_transformer_submodules=1)
  model = peft.get_peft_model(model, prompt_config)
  model.train()
  optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.3)
  rng = np.random.default_rng(0)
  inputs = torch.tensor(rng.integers(2, 32000, size=(BATCH, INPUT_LENGTH)))
  labels = torch.tensor(rng.integers(2, 32000, size=(BATCH, TARGET_LENGTH)))
  mask = torch.ones_like(inputs)
  task_ids = torch.zeros(BATCH, dtype=torch.long)

  def step():
    loss = model(input_ids=inputs, attention_mask=mask, labels=labels, task_ids=task_ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

  def forward():
    with torch.no_grad():
      model(input_ids=inputs, attention_mask=mask, labels=labels, task_ids=task_ids)

  best = {"step": float("inf"), "forward": float("inf")}
  for name, fn in (("step", step), ("forward", forward)):
    fn()
  for _ in range(6):
    for name, fn in (("step", step), ("forward", forward)):
      start = time.perf_counter()
      fn()
      best[name] = min(best[name], time.perf_counter() - start)
  best["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  best["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                      "peft": peft.__version__}
  print(json.dumps(best))


if __name__ == "__main__":
  main()
