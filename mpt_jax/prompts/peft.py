"""HuggingFace PEFT adapters: MULTITASK_PROMPT_TUNING and PROMPT_TUNING, encoder-only.

An MPT adapter holds `prompt_embeddings` (l, d) = P*, `prefix_task_cols` (K, l, r) = U
and `prefix_task_rows` (K, r, d) = V, exactly our decomposed prompt. We write
`num_transformer_submodules: 1` (the paper's encoder-only prompt; PEFT's seq2seq
default of 2 would also prepend half the prompt to the decoder). Task names, which
PEFT has no place for, travel in the safetensors header and PEFT ignores them; an
adapter trained by PEFT has none, so its tasks are `task_0`... unless renamed.

Prompts with one l x d prompt per task (banks, merged prompts, one P* per task) become a
folder of per-task adapters, `<folder>/<task>/`, with `TASKS_FILE` keeping their order;
`read_adapter_folder` reads such a folder back as one prompt set.
"""

import json
import logging

from etils import epath
import numpy as np
import safetensors
import safetensors.numpy

from mpt_jax import paths
from mpt_jax.backbone import hub
from mpt_jax.prompts import modules as prompt_modules
from mpt_jax.prompts.prompt_set import PromptSet

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
TASKS_FILE = "mpt_jax_tasks.json"  # a folder of per-task adapters: their task-id order
_MPT_ONLY_FIELDS = ("num_tasks", "num_ranks", "prompt_tuning_init_task",
                    "prompt_tuning_init_state_dict_path")
_PEFT_TO_OURS = {"prompt_embeddings": prompt_modules.SHARED,
                 "prefix_task_cols": prompt_modules.TASK_COLS,
                 "prefix_task_rows": prompt_modules.TASK_ROWS}


def is_peft_adapter(path) -> bool:
  return (paths.as_path(path) / CONFIG_FILE).is_file()


def adapter_subfolders(path) -> list[epath.Path]:
  """The per-task adapter directories of a folder, in task-id order: as `TASKS_FILE`
  lists them, else sorted by name. Empty for anything else."""
  folder = paths.as_path(path)
  if (folder / TASKS_FILE).is_file():
    names = json.loads((folder / TASKS_FILE).read_text())["tasks"]
    missing = [n for n in names if not is_peft_adapter(folder / n)]
    if missing:
      raise FileNotFoundError(f"{folder / TASKS_FILE} lists tasks {missing} whose adapter "
                              f"directories ({CONFIG_FILE} + {WEIGHTS_FILE}) are missing.")
    return [folder / n for n in names]
  return sorted(p for p in folder.iterdir() if p.is_dir() and is_peft_adapter(p))


def read_adapter_folder(path, task_names=None) -> PromptSet:
  """A folder of one-task adapters as one prompt set, each task named by its directory:
  prompt-tuning adapters become a bank, one-task MPT adapters one decomposed prompt
  with a P* per task."""
  folder = paths.as_path(path)
  subfolders = adapter_subfolders(folder)
  if not subfolders:
    raise FileNotFoundError(f"{folder} holds no PEFT adapter directories.")
  parts = [read_peft_adapter(p) for p in subfolders]
  names = [p.name for p in subfolders]
  kinds = {p.kind for p in parts}
  shapes = {(p.length, p.embed_dim, p.rank) for p in parts}
  if len(kinds) != 1 or len(shapes) != 1 or any(p.num_tasks != 1 for p in parts):
    found = [f"{n}: {p.kind}, {p.num_tasks} task(s), l={p.length}, d={p.embed_dim}, "
             f"r={p.rank}" for n, p in zip(names, parts)]
    raise ValueError(f"The adapters in {folder} cannot form one prompt set: each must be a "
                     "one-task adapter of the same kind and shape. Found: " + "; ".join(found))
  if kinds == {"single"}:
    arrays, kind = {"prompts": np.stack([p.arrays["prompt"] for p in parts])}, "bank"
  else:
    arrays = {name: np.concatenate([p.arrays[name] for p in parts])
              for name in (prompt_modules.TASK_COLS, prompt_modules.TASK_ROWS)}
    arrays[prompt_modules.SHARED] = np.stack([p.arrays[prompt_modules.SHARED] for p in parts])
    kind = "decomposed"
  prompts = PromptSet(kind, arrays, names, metadata={"peft_config": parts[0].metadata[
      "peft_config"], "adapters": [str(p) for p in subfolders]})
  return prompts.with_task_names(task_names) if task_names is not None else prompts


def read_peft_adapter(path, task_names=None) -> PromptSet:
  """A PEFT MPT or prompt-tuning adapter directory as a PromptSet. `task_names` (a list
  in task-id order, or a mapping such as {'task_0': 'rte'}) names the tasks of an
  adapter that does not record them."""
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
  recorded = json.loads(names) if names else [f"task_{i}" for i in range(num_tasks)]
  prompts = PromptSet(kind=kind, arrays=arrays, task_names=recorded,
                      metadata={"peft_config": config})
  if task_names is None:
    return prompts
  try:
    return prompts.with_task_names(task_names)
  except ValueError as e:
    raise ValueError(f"{directory}: {e}") from e


def _base_model(prompts: PromptSet, override):
  """What AutoPeftModel loads the backbone from: the override, else the backbone the
  prompt file records when transformers can load it, else what an imported adapter had."""
  if override is not None:
    return str(override)
  source = prompts.metadata.get("backbone")
  found = hub.transformers_name(source) if source else None
  if source and found is None:
    logging.warning("The prompts' backbone %r is not a HuggingFace model; the adapter "
                    "records no base_model_name_or_path. Pass base_model_name_or_path= "
                    "(a hub id or a HuggingFace directory of that backbone).", source)
  return found or (prompts.metadata.get("peft_config") or {}).get("base_model_name_or_path")


def _config_for(prompts: PromptSet, base_model) -> dict:
  """The adapter config PEFT needs, keeping any fields an imported adapter had."""
  config = dict(prompts.metadata.get("peft_config") or {})
  backbone = prompts.backbone_config or {}
  config["base_model_name_or_path"] = base_model
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
  else:  # a prompt-tuning adapter cut from an imported MPT one keeps no MPT fields
    for key in _MPT_ONLY_FIELDS:
      config.pop(key, None)
  return config


def _write_one(prompts: PromptSet, directory: epath.Path, base_model) -> None:
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
  (directory / CONFIG_FILE).write_text(json.dumps(_config_for(prompts, base_model),
                                                  indent=2, sort_keys=True))


def export_peft(prompts: PromptSet, out_dir, *,
                base_model_name_or_path=None) -> list[epath.Path]:
  """Writes PEFT adapter directories a PyTorch user loads with
  `AutoPeftModelForSeq2SeqLM.from_pretrained(directory)`, and returns them.

  A decomposed prompt becomes one MPT adapter and a single prompt one prompt-tuning
  adapter. A bank or a merged prompt has no MPT equivalent, so each task gets its own
  prompt-tuning adapter in `out_dir/<task name>/`; so does each task of a decomposed
  prompt with one P* per task (a one-task MPT adapter). `base_model_name_or_path`
  defaults to the backbone the prompt file records, where transformers can load it.
  """
  out_dir = paths.as_path(out_dir)
  base_model = _base_model(prompts, base_model_name_or_path)
  if prompts.kind in ("single", "decomposed") and not prompts.shared_per_task:
    _write_one(prompts, out_dir, base_model)
    return [out_dir]
  written = []
  for index, name in enumerate(prompts.task_names):
    _write_one(_one_task(prompts, index), out_dir / name, base_model)
    written.append(out_dir / name)
  (out_dir / TASKS_FILE).write_text(json.dumps({"tasks": list(prompts.task_names)}))
  return written


def _one_task(prompts: PromptSet, index: int) -> PromptSet:
  """Task `index` alone: a single prompt from a bank, or a one-task MPT prompt."""
  name = (prompts.task_names[index],)
  if prompts.kind in ("bank", "merged"):
    return PromptSet("single", {"prompt": prompts.arrays["prompts"][index]}, name,
                     prompts.backbone_config, prompts.metadata)
  arrays = {k: v[index:index + 1] for k, v in prompts.arrays.items()}
  arrays[prompt_modules.SHARED] = prompts.arrays[prompt_modules.SHARED][index]
  return PromptSet("decomposed", arrays, name, prompts.backbone_config, prompts.metadata)
