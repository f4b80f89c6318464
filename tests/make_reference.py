"""Writes the parity fixtures in tests/fixtures with PyTorch, transformers and PEFT.

Run once through `make fixtures` (the `reference` extra); the outputs are committed so
that CI never needs PyTorch. Everything is seeded, tiny and float32.

Outputs:
  hf_t5_1_0/        T5 1.0 (ReLU, tied head scaled by d^-0.5), one safetensors file.
  hf_t5_1_1/        T5 1.1 (gated GELU, untied lm_head), two shards + index, written
                    as the HuggingFace hub stores google/t5-v1_1-* (tie_word_embeddings
                    false, a separate lm_head.weight).
  peft_mpt_r1/, peft_mpt_r2/   PEFT MultitaskPromptTuning adapters (num_transformer_submodules=1)
                    on the T5 1.1 model, ranks 1 and 2.
  reference.npz     inputs and the logits/prompts transformers and PEFT computed, the
                    tokens `generate` decodes (greedy and beam search, with and without
                    the PEFT prompt), and the logits of adapters that mpt_jax exported,
                    loaded back with AutoPeftModelForSeq2SeqLM.
"""

import copy
import json
import pathlib
import tempfile

import numpy as np
import peft
import safetensors.torch
import torch
import transformers

import mpt_jax

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
COMMON = dict(vocab_size=128, d_model=32, d_kv=6, d_ff=48, num_heads=4, num_layers=2,
              num_decoder_layers=3, relative_attention_num_buckets=8,
              relative_attention_max_distance=20, dropout_rate=0.1, layer_norm_epsilon=1e-6,
              decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
NUM_TASKS, PROMPT_LENGTH = 3, 4
NEW_TOKENS, BEAM_SIZES = 8, (1, 2, 4)
EXPORTED_TASKS = ("rte", "mrpc", "cola")


def make_inputs(rng):
  encoder = rng.integers(2, COMMON["vocab_size"], size=(3, 9))
  encoder[0, 6:] = 0  # padding, as seqio pads: real tokens then zeros
  encoder[1, 3:] = 0
  encoder[np.arange(3), [5, 2, 8]] = 1  # EOS
  targets = rng.integers(2, COMMON["vocab_size"], size=(3, 5))
  decoder = np.concatenate([np.zeros((3, 1), targets.dtype), targets[:, :-1]], axis=1)
  return encoder, decoder, targets


def prompted_logits(model, encoder, decoder, prompts):
  """HF forward with inputs_embeds = [prompt; token embeddings] and the mask grown."""
  ids = torch.tensor(encoder)
  embeds = torch.cat([prompts, model.shared(ids)], dim=1)
  mask = torch.cat([torch.ones(prompts.shape[:2], dtype=torch.long), (ids > 0).long()], 1)
  out = model(inputs_embeds=embeds, attention_mask=mask,
              decoder_input_ids=torch.tensor(decoder))
  return out.logits


def write_t5_1_0(arrays, inputs):
  config = transformers.T5Config(feed_forward_proj="relu", tie_word_embeddings=True, **COMMON)
  model = transformers.T5ForConditionalGeneration(config).eval()
  model.save_pretrained(FIXTURES / "hf_t5_1_0")
  record_logits("t5_1_0", model, arrays, inputs)


def write_t5_1_1(arrays, inputs):
  """Untied head, as google/t5-v1_1-*; transformers 5 would tie it on save."""
  config = transformers.T5Config(feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                 **COMMON)
  model = transformers.T5ForConditionalGeneration(config).eval()
  model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight))
  directory = FIXTURES / "hf_t5_1_1"
  directory.mkdir(parents=True, exist_ok=True)
  state = {k: v.contiguous() for k, v in model.state_dict().items()
           if not k.endswith("embed_tokens.weight")}
  names = sorted(state)
  shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
            "model-00002-of-00002.safetensors": names[len(names) // 2:]}
  weight_map = {}
  for filename, keys in shards.items():
    safetensors.torch.save_file({k: state[k] for k in keys}, directory / filename,
                                metadata={"format": "pt"})
    weight_map.update({k: filename for k in keys})
  (directory / "model.safetensors.index.json").write_text(
      json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))
  hf_config = config.to_dict()
  hf_config.update(tie_word_embeddings=False)
  hf_config.pop("scale_decoder_outputs", None)
  (directory / "config.json").write_text(json.dumps(hf_config, indent=2))
  record_logits("t5_1_1", model, arrays, inputs)
  return model


def record_logits(name, model, arrays, inputs):
  encoder, decoder, shared_prompt, batch_prompts = inputs
  with torch.no_grad():
    arrays[f"{name}/logits"] = model(
        input_ids=torch.tensor(encoder), attention_mask=torch.tensor(encoder > 0).long(),
        decoder_input_ids=torch.tensor(decoder)).logits.numpy()
    shared = torch.tensor(shared_prompt)[None].expand(len(encoder), -1, -1)
    arrays[f"{name}/logits_shared_prompt"] = prompted_logits(
        model, encoder, decoder, shared).numpy()
    arrays[f"{name}/logits_batch_prompts"] = prompted_logits(
        model, encoder, decoder, torch.tensor(batch_prompts)).numpy()


def write_peft(model, rank, arrays, inputs, targets):
  """PEFT's seq2seq MPT forward with num_transformer_submodules=1 drops
  `decoder_input_ids`, so the decoder inputs come from `labels` (shifted right)."""
  encoder = inputs[0]
  config = peft.MultitaskPromptTuningConfig(
      task_type=peft.TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=PROMPT_LENGTH,
      num_tasks=NUM_TASKS, num_ranks=rank, num_transformer_submodules=1)
  peft_model = peft.get_peft_model(copy.deepcopy(model), config).eval()
  directory = FIXTURES / f"peft_mpt_r{rank}"
  peft_model.save_pretrained(directory)
  encoder_module = peft_model.prompt_encoder["default"]
  with torch.no_grad():
    indices = torch.arange(PROMPT_LENGTH)[None].expand(NUM_TASKS, -1)
    arrays[f"peft_r{rank}/prompts"] = encoder_module(
        indices, torch.arange(NUM_TASKS)).numpy()
    for task in range(NUM_TASKS):
      task_ids = torch.full((len(encoder),), task)
      arrays[f"peft_r{rank}/logits_task{task}"] = peft_model(
          input_ids=torch.tensor(encoder), attention_mask=torch.tensor(encoder > 0).long(),
          labels=torch.tensor(targets), task_ids=task_ids).logits.numpy()


def _generate(model, encoder, num_beams, **kwargs):
  """transformers' decoding at length_penalty 0: HF divides a beam's log-likelihood by
  length**penalty, t5x by ((5 + length) / 6)**alpha, and at 0 both rank by likelihood.
  Without the KV cache: transformers 5.23 sizes it by the encoder's layer count, and
  these fixtures' decoder has one layer more."""
  with torch.no_grad():
    out = model.generate(input_ids=torch.tensor(encoder),
                         attention_mask=torch.tensor(encoder > 0).long(), num_beams=num_beams,
                         max_new_tokens=NEW_TOKENS, do_sample=False, use_cache=False,
                         **({"length_penalty": 0.0} if num_beams > 1 else {}), **kwargs)
  return out[:, 1:].numpy()  # without the decoder start token


def write_generation(model, arrays, encoder):
  """Greedy (1 beam) and beam-search tokens of the T5 1.1 model, alone and with the
  rank-1 PEFT MPT adapter for each task."""
  prompted = peft.PeftModel.from_pretrained(copy.deepcopy(model), FIXTURES / "peft_mpt_r1")
  prompted.eval()
  for beams in BEAM_SIZES:
    arrays[f"generate/t5_1_1/beams{beams}"] = _generate(model, encoder, beams)
    for task in range(NUM_TASKS):
      task_ids = torch.full((len(encoder),), task)
      arrays[f"generate/peft_r1/task{task}/beams{beams}"] = _generate(
          prompted, encoder, beams, task_ids=task_ids)


def write_exported_adapters(arrays, encoder, targets):
  """Adapters mpt_jax exports from the rank-2 PEFT adapter (one MPT adapter, and the
  merged per-task prompt-tuning adapters), each loaded by AutoPeftModelForSeq2SeqLM
  from its own base_model_name_or_path: the logits it computes for every task."""
  prompts = mpt_jax.load_prompts(FIXTURES / "peft_mpt_r2", task_names=list(EXPORTED_TASKS))
  base = str(FIXTURES / "hf_t5_1_1")
  with tempfile.TemporaryDirectory() as tmp:
    mpt_dir, = mpt_jax.export_peft(prompts, f"{tmp}/mpt", base_model_name_or_path=base)
    merged_dirs = mpt_jax.export_peft(prompts.to_merged(), f"{tmp}/merged",
                                      base_model_name_or_path=base)
    mpt = peft.AutoPeftModelForSeq2SeqLM.from_pretrained(mpt_dir).eval()
    for task, merged_dir in enumerate(merged_dirs):
      merged = peft.AutoPeftModelForSeq2SeqLM.from_pretrained(merged_dir).eval()
      batch = dict(input_ids=torch.tensor(encoder),
                   attention_mask=torch.tensor(encoder > 0).long(),
                   labels=torch.tensor(targets))
      with torch.no_grad():
        arrays[f"exported/mpt/logits_task{task}"] = mpt(
            **batch, task_ids=torch.full((len(encoder),), task)).logits.numpy()
        arrays[f"exported/merged/logits_task{task}"] = merged(**batch).logits.numpy()


def main():
  torch.manual_seed(0)
  rng = np.random.default_rng(0)
  encoder, decoder, targets = make_inputs(rng)
  shared_prompt = rng.normal(size=(PROMPT_LENGTH, COMMON["d_model"])).astype(np.float32)
  batch_prompts = rng.normal(
      size=(len(encoder), PROMPT_LENGTH, COMMON["d_model"])).astype(np.float32)
  inputs = (encoder, decoder, shared_prompt, batch_prompts)
  arrays = {"encoder_input_tokens": encoder.astype(np.int32),
            "decoder_input_tokens": decoder.astype(np.int32),
            "shared_prompt": shared_prompt, "batch_prompts": batch_prompts}
  FIXTURES.mkdir(exist_ok=True)
  write_t5_1_0(arrays, inputs)
  model = write_t5_1_1(arrays, inputs)
  for rank in (1, 2):
    write_peft(model, rank, arrays, inputs, targets)
  write_generation(model, arrays, encoder)
  write_exported_adapters(arrays, encoder, targets)
  np.savez(FIXTURES / "reference.npz", **arrays)
  print("wrote", sorted(p.name for p in FIXTURES.iterdir()))


if __name__ == "__main__":
  main()
