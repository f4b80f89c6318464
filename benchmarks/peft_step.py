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
import torch

import peft_common  # beside this script, which runs as `python benchmarks/...`

TARGET_LENGTH = 8


def main():
  model = peft_common.prompted_model()
  model.train()
  optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.3)
  rng = np.random.default_rng(0)
  inputs, mask, task_ids = peft_common.inputs(rng)
  labels = torch.tensor(rng.integers(2, 32000, size=(peft_common.BATCH, TARGET_LENGTH)))

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
  best["versions"] = peft_common.versions()
  print(json.dumps(best))


if __name__ == "__main__":
  main()
