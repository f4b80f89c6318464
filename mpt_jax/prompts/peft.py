"""HuggingFace PEFT adapters: MULTITASK_PROMPT_TUNING and PROMPT_TUNING, encoder-only.

An MPT adapter holds `prompt_embeddings` (l, d) = P*, `prefix_task_cols` (K, l, r) = U
and `prefix_task_rows` (K, r, d) = V, exactly our decomposed prompt. We write
`num_transformer_submodules: 1` (the paper's encoder-only prompt; PEFT's seq2seq
default of 2 would also prepend half the prompt to the decoder). Task names, which
PEFT has no place for, travel in the safetensors header and PEFT ignores them.
"""

import json

from etils import epath
import numpy as np
import safetensors
import safetensors.numpy

from mpt_jax import paths
from mpt_jax.prompts import modules as prompt_modules
from mpt_jax.prompts.prompt_set import PromptSet

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_PEFT_TO_OURS = {"prompt_embeddings": prompt_modules.SHARED,
                 "prefix_task_cols": prompt_modules.TASK_COLS,
                 "prefix_task_rows": prompt_modules.TASK_ROWS}


def is_peft_adapter(path) -> bool:
  return (paths.as_path(path) / CONFIG_FILE).is_file()


def read_peft_adapter(path) -> PromptSet:
  """A PEFT MPT or prompt-tuning adapter directory as a PromptSet."""
  directory = paths.as_path(path)
  config = json.loads((directory / CONFIG_FILE).read_text())
  weights = directory / WEIGHTS_FILE
  if not weights.is_file():
    raise FileNotFoundError(
        f"{weights} not found. Only safetensors adapters are read (adapter_model.bin is a "
        "pickle); save with `save_pretrained(..., safe_serialization=True)`.")
  with paths.local_copy(weights) as local, safetensors.safe_open(local, framework="numpy") as f:
    tensors = {k: f.get_tensor(k) for k in f.keys()}
    header = f.metadata() or {}
  peft_type = config.get("peft_type")
  submodules = config.get("num_transformer_submodules") or 1
  if submodules != 1:
    raise ValueError(
        f"{directory}: num_transformer_submodules={submodules} puts part of the prompt on the "
        "decoder; MPT prompts the encoder only. Retrain with num_transformer_submodules=1.")
  l = config["num_virtual_tokens"]
  if tensors["prompt_embeddings"].shape[0] != l:
    raise ValueError(f"{directory}: prompt_embeddings has {tensors['prompt_embeddings'].shape[0]} "
                     f"rows but num_virtual_tokens is {l}.")
  if peft_type == "MULTITASK_PROMPT_TUNING":
    arrays = {_PEFT_TO_OURS[k]: v for k, v in tensors.items()}
    kind, num_tasks = "decomposed", config["num_tasks"]
  elif peft_type == "PROMPT_TUNING":
    arrays, kind, num_tasks = {"prompt": tensors["prompt_embeddings"]}, "single", 1
  else:
    raise ValueError(f"{directory}: PEFT type {peft_type!r} is not a prompt this library "
                     "uses; expected MULTITASK_PROMPT_TUNING or PROMPT_TUNING.")
  names = header.get("mpt_jax.task_names")
  task_names = json.loads(names) if names else [f"task_{i}" for i in range(num_tasks)]
  return PromptSet(kind=kind, arrays=arrays, task_names=task_names,
                   metadata={"peft_config": config})


def _config_for(prompts: PromptSet) -> dict:
  """The adapter config PEFT needs, keeping any fields an imported adapter had."""
  config = dict(prompts.metadata.get("peft_config") or {})
  backbone = prompts.backbone_config or {}
  config.setdefault("base_model_name_or_path", None)
  config.setdefault("inference_mode", True)
  config.setdefault("prompt_tuning_init", "RANDOM")
  config.setdefault("revision", None)
  config.update({
      "peft_type": "MULTITASK_PROMPT_TUNING" if prompts.kind == "decomposed" else "PROMPT_TUNING",
      "task_type": "SEQ_2_SEQ_LM",
      "num_virtual_tokens": prompts.length,
      "token_dim": prompts.embed_dim,
      "num_transformer_submodules": 1,
  })
  if backbone:
    config["num_attention_heads"] = backbone["num_heads"]
    config["num_layers"] = backbone["num_layers"]
  if prompts.kind == "decomposed":
    config.update(num_tasks=prompts.num_tasks, num_ranks=prompts.rank)
  return config


def _write_one(prompts: PromptSet, directory: epath.Path) -> None:
  directory.mkdir(parents=True, exist_ok=True)
  if prompts.kind == "decomposed":
    ours_to_peft = {v: k for k, v in _PEFT_TO_OURS.items()}
    tensors = {ours_to_peft[k]: v for k, v in prompts.arrays.items()}
  else:
    tensors = {"prompt_embeddings": prompts.arrays["prompt"]}
  metadata = {"format": "pt", "mpt_jax.task_names": json.dumps(list(prompts.task_names))}
  tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
  paths.write_atomically(directory / WEIGHTS_FILE, lambda local: (
      safetensors.numpy.save_file(tensors, local, metadata=metadata)))
  (directory / CONFIG_FILE).write_text(json.dumps(_config_for(prompts), indent=2,
                                                  sort_keys=True))


def export_peft(prompts: PromptSet, out_dir) -> list[epath.Path]:
  """Writes PEFT adapter directories a PyTorch user loads with
  `PeftModel.from_pretrained`, and returns them.

  A decomposed prompt becomes one MPT adapter and a single prompt one prompt-tuning
  adapter. A prompt bank has no MPT equivalent, so each task gets its own
  prompt-tuning adapter in `out_dir/<task name>/`; so does each task of a
  decomposed prompt with one P* per task (a one-task MPT adapter).
  """
  out_dir = paths.as_path(out_dir)
  if prompts.kind != "bank" and not prompts.shared_per_task:
    _write_one(prompts, out_dir)
    return [out_dir]
  written = []
  for index, name in enumerate(prompts.task_names):
    _write_one(_one_task(prompts, index), out_dir / name)
    written.append(out_dir / name)
  return written


def _one_task(prompts: PromptSet, index: int) -> PromptSet:
  """Task `index` alone: a single prompt from a bank, or a one-task MPT prompt."""
  name = (prompts.task_names[index],)
  if prompts.kind == "bank":
    return PromptSet("single", {"prompt": prompts.arrays["prompts"][index]}, name,
                     prompts.backbone_config, prompts.metadata)
  arrays = {k: v[index:index + 1] for k, v in prompts.arrays.items()}
  arrays[prompt_modules.SHARED] = prompts.arrays[prompt_modules.SHARED][index]
  return PromptSet("decomposed", arrays, name, prompts.backbone_config, prompts.metadata)
