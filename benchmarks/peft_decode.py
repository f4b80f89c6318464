"""The PyTorch side of `make bench`'s decoding rows: greedy and beam-4 tokens/s of
HuggingFace `generate` with the PEFT MultitaskPromptTuning adapter, on this CPU.

Run by `run_all.py` with the `reference` extra's interpreter; prints one JSON line.
Same shape as `decode.py`: `peft_step.py`'s T5-small-shaped random backbone, batch 8,
inputs 256 + a 100-vector encoder prompt, 2 threads, the KV cache on (the default).
min_new_tokens = max_new_tokens = 32 masks EOS until the last token, so every example
gets exactly 32 new tokens, as `decode.py`'s eos_id=-1; beam search ranks by likelihood
(length_penalty 0, as `decode.py`'s alpha 0). tokens/s is batch * 32 / seconds of one
generate call (encoder included; the best beam's tokens for beam search).
"""

import json
import time

import numpy as np
import torch

import peft_common  # beside this script, which runs as `python benchmarks/...`

NEW_TOKENS = 32
NUM_BEAMS = {"greedy": 1, "beam4": 4}
BATCH = peft_common.BATCH


def main():
  model = peft_common.prompted_model()
  model.eval()
  inputs, mask, task_ids = peft_common.inputs(np.random.default_rng(0))

  def generate(num_beams):
    with torch.no_grad():
      out = model.generate(input_ids=inputs, attention_mask=mask, task_ids=task_ids,
                           num_beams=num_beams, do_sample=False, min_new_tokens=NEW_TOKENS,
                           max_new_tokens=NEW_TOKENS,
                           **({"length_penalty": 0.0} if num_beams > 1 else {}))
    assert out.shape == (BATCH, 1 + NEW_TOKENS), out.shape  # after the start token
    return out

  for num_beams in NUM_BEAMS.values():
    generate(num_beams)
  seconds = {name: float("inf") for name in NUM_BEAMS}
  for _ in range(4):
    for name, num_beams in NUM_BEAMS.items():
      start = time.perf_counter()
      generate(num_beams)
      seconds[name] = min(seconds[name], time.perf_counter() - start)
  print(json.dumps({
      "seconds": seconds,
      "tokens_per_second": {k: BATCH * NEW_TOKENS / s for k, s in seconds.items()},
      "versions": peft_common.versions()}))


if __name__ == "__main__":
  main()
