"""The JAX side of `make bench`'s decoding rows: greedy and beam-4 tokens/s of
`PromptTuningModel.predict_batch_with_aux` on this CPU. Prints one JSON line.

Shape (the issue's): the T5-small-shaped random backbone of `prompt_step.py`, batch 8,
inputs 256 + a rank-1 decomposed 100-vector prompt (PEFT's MultitaskPromptTuning with one
task, which `peft_decode.py` runs), exactly 32 new tokens per example: eos_id=-1 never
matches, so random weights cannot stop a row early. Beam search ranks by likelihood
(alpha 0, as `peft_decode.py`'s length_penalty 0). A call encodes and decodes; its
tokens/s is batch * 32 / seconds (the best beam's tokens for beam search). The encoder's
FLOPs are reported too: both libraries encode the same 8 x 356 tokens once per call, which
bounds how far ahead any decoder can get.
"""

import json
import pathlib
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks import common  # pylint: disable=g-import-not-at-top
from mpt_jax.model import models  # pylint: disable=g-import-not-at-top
from mpt_jax.model.decoding import DecodingConfig  # pylint: disable=g-import-not-at-top
from mpt_jax.prompts import modules as prompts  # pylint: disable=g-import-not-at-top

NEW_TOKENS = 32
DECODERS = {"greedy": DecodingConfig(), "beam4": DecodingConfig(beam_size=4, alpha=0.0)}


def main():
  config = common.small_config()
  prompt = prompts.DecomposedPrompt(1, common.PROMPT_LENGTH, config.d_model)
  model = models.PromptTuningModel(config, prompt)
  params = {**common.random_params(config), "prompt": prompt.init(
      jax.random.PRNGKey(0), jnp.zeros((1,), jnp.int32))["params"]}
  batch = {k: jnp.asarray(v) for k, v in common.batch().items()
           if k in ("encoder_input_tokens", "task_ids")}

  def decoder(decoding_config):
    return jax.jit(lambda p, b: model.predict_batch_with_aux(
        p, b, NEW_TOKENS, decoding_config=decoding_config, eos_id=-1))

  seconds = common.interleaved_seconds(
      {name: (decoder(c), (params, batch)) for name, c in DECODERS.items()},
      rounds=4, warmup=1)
  net = model.network
  encode = jax.jit(lambda p, b: net.apply({"params": p}, b["encoder_input_tokens"],
                                          b["task_ids"], method=net.encode_prompted))
  tokens = common.BATCH * NEW_TOKENS
  print(json.dumps({"seconds": seconds,
                    "tokens_per_second": {k: tokens / s for k, s in seconds.items()},
                    "tokens_per_call": tokens,
                    "encoder_flops": common.flops_of(encode, params, batch)}))


if __name__ == "__main__":
  main()
