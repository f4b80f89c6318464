"""Which prompt module a run trains and how it starts (gin factories), and the module
that holds a saved prompt.

Each factory takes the loaded backbone and the run's task names and returns a prompt
module; a gin file picks one (`train.prompt = @decomposed_prompt`) and sets its
length and initialisation. The defaults follow the paper: l = 100, rank 1,
teachers from sampled vocabulary embeddings.
"""

from typing import Mapping, Optional, Sequence, Union

import gin
import jax
import numpy as np

from mpt_jax.prompts import initializers
from mpt_jax.prompts import modules as prompt_modules
from mpt_jax.prompts.loading import load_prompts_for
from mpt_jax.prompts.prompt_set import PromptSet
from tasks import few_shot
from tasks import registry


def _class_label_ids(task_names: Sequence[str]) -> list[list[int]]:
  ids = []
  for name in task_names:
    label_ids = registry.label_token_ids(name)
    if not label_ids:
      raise ValueError(f"init='class_labels' needs the labels of {name!r}; it has none "
                       "registered (tasks.registry.register_class_labels).")
    ids.extend(label_ids)
  return ids


def _initializer(kind: str, backbone, task_names, first_n: int, path, task):
  if kind == "uniform":
    return prompt_modules.uniform()
  if kind == "sampled_vocab":
    return initializers.sampled_vocab(backbone.params["token_embedder"]["embedding"], first_n)
  if kind == "class_labels":
    return initializers.class_labels(backbone.params["token_embedder"]["embedding"],
                                    _class_label_ids(task_names), first_n)
  if kind == "file":
    if path is None:
      raise ValueError("init='file' needs init_prompts, the prompt file to start from.")
    return initializers.from_prompt_file(load_prompts_for(path, backbone), task, path)
  raise ValueError(f"Unknown prompt init {kind!r}: uniform, sampled_vocab, class_labels "
                   "or file.")


@gin.configurable
def single_prompt(backbone, task_names, *, length: int = 100, init: str = "sampled_vocab",
                  first_n: int = 5000, init_prompts: Optional[str] = None,
                  init_task: Optional[str] = None):
  """One prompt for every task. `init='file'` with `init_prompts` and `init_task` is
  SPoT-style transfer: start from one source task's trained prompt."""
  return prompt_modules.SinglePrompt(
      length, backbone.config.d_model,
      _initializer(init, backbone, task_names, first_n, init_prompts, init_task))


@gin.configurable
def prompt_bank(backbone, task_names, *, length: int = 100, init: str = "sampled_vocab",
                first_n: int = 5000, init_prompts: Optional[str] = None,
                source_tasks: Union[None, str, Mapping[str, str]] = None):
  """One prompt per task, trained together (MPT's teachers, the PT baseline).

  `init='file'` is SPoT-style transfer: each task starts from a source task's trained
  prompt in `init_prompts`, the source named by `source_tasks` (one name for all, or
  {task: source}; a k-shot task looks up its parent's name), else the task itself.
  """
  d = backbone.config.d_model
  if init == "file":
    if init_prompts is None:
      raise ValueError("prompt_bank init='file' needs init_prompts, a prompt file.")
    saved = load_prompts_for(init_prompts, backbone)
    sources = [_source_task(name, source_tasks, saved) for name in task_names]
    bank = np.stack([saved.prompt(source) for source in sources])
    return prompt_modules.PromptBank(len(task_names), length, d,
                              bank_init=initializers.from_array(bank, "source prompts"))
  if init not in ("uniform", "sampled_vocab"):
    raise ValueError(f"A prompt bank starts from 'uniform', 'sampled_vocab' or 'file', not "
                     f"{init!r}.")
  return prompt_modules.PromptBank(len(task_names), length, d,
                            _initializer(init, backbone, task_names, first_n, None, None))


def _source_task(task: str, source_tasks, saved: PromptSet) -> str:
  parent = few_shot.parent_name(task)
  if isinstance(source_tasks, str):
    return source_tasks
  if source_tasks and parent in source_tasks:
    return source_tasks[parent]
  if parent in saved.task_names:
    return parent
  raise ValueError(f"No source prompt for {task!r}: name one in prompt_bank.source_tasks "
                   f"(the prompt file has {list(saved.task_names)}).")


_FACTOR_INITS = {"ones": (None, None),
                 "peft_normal": (jax.nn.initializers.normal(0.02),) * 2}


@gin.configurable
def decomposed_prompt(backbone, task_names, *, length: int = 100, rank: int = 1,
                      shared_init: str = "sampled_vocab", factor_init: str = "ones",
                      first_n: int = 5000, source: Optional[str] = None,
                      shared_per_task: bool = False):
  """MPT's P* ∘ (U_k V_k). With `source` (a distillation run's prompt file), P* and
  each task's U, V start from P* and the mean U, V of the source tasks (stage 3).
  `shared_per_task` gives each task its own P* (single-target MPT for every task in
  one job); by default the tasks share P* (multi-target MPT*)."""
  num_tasks, d = len(task_names), backbone.config.d_model
  if source is not None:
    saved = load_prompts_for(source, backbone)
    inits = initializers.from_source(saved, num_tasks, shared_per_task, source)
    rank = saved.rank
  else:
    if factor_init not in _FACTOR_INITS:
      raise ValueError(f"Unknown factor_init {factor_init!r}: {sorted(_FACTOR_INITS)}.")
    cols, rows = _FACTOR_INITS[factor_init]
    inits = {"shared_init": _initializer(shared_init, backbone, task_names, first_n, None,
                                         None), "cols_init": cols, "rows_init": rows}
  return prompt_modules.DecomposedPrompt(num_tasks, length, d, rank, **inits,
                                  shared_per_task=shared_per_task)


def teacher_bank(path, task_names: Sequence[str], backbone=None):
  """A frozen prompt bank holding a teacher run's prompts, reordered to `task_names`;
  refused if they belong to another backbone than `backbone` (when given)."""
  teachers = load_prompts_for(path, backbone) if backbone else PromptSet.load(path)
  missing = [name for name in task_names if name not in teachers.task_names]
  if missing:
    raise ValueError(f"The teacher prompts in {path} have no prompt for {missing}; they "
                     f"cover {list(teachers.task_names)}.")
  merged = teachers.merged()
  bank = np.stack([merged[teachers.task_index(name)] for name in task_names])
  return prompt_modules.PromptBank(len(task_names), bank.shape[1], bank.shape[2],
                            bank_init=initializers.from_array(bank, "teacher prompts"))


@gin.configurable
def saved_prompt(backbone, task_names, *, path: str = gin.REQUIRED):
  """The prompt a run saved in `path`, where a run expects a factory (t5x.eval builds its
  model from one); it must be the prompt of the same tasks, in the same order."""
  del backbone  # the saved prompt has its shape
  prompt_set = PromptSet.load(path)
  if tuple(task_names) != tuple(prompt_set.task_names):
    raise ValueError(f"The prompt file {path} holds the prompts of tasks "
                     f"{list(prompt_set.task_names)}; this run's tasks are {list(task_names)}. "
                     "Name the mixture it was trained on.")
  return module_for(prompt_set)


def module_for(prompt_set: PromptSet):
  """A prompt module of the saved kind whose parameters start as the saved ones."""
  a = prompt_set.arrays
  if prompt_set.kind == prompt_modules.SinglePrompt.kind:
    return prompt_modules.SinglePrompt(prompt_set.length, prompt_set.embed_dim,
                                initializers.from_array(a["prompt"]))
  if prompt_set.kind in (prompt_modules.PromptBank.kind, "merged"):
    return prompt_modules.PromptBank(prompt_set.num_tasks, prompt_set.length, prompt_set.embed_dim,
                              bank_init=initializers.from_array(a["prompts"]))
  return prompt_modules.DecomposedPrompt(
      prompt_set.num_tasks, prompt_set.length, prompt_set.embed_dim, prompt_set.rank,
      shared_init=initializers.from_array(a[prompt_modules.SHARED]),
      cols_init=initializers.from_array(a[prompt_modules.TASK_COLS]),
      rows_init=initializers.from_array(a[prompt_modules.TASK_ROWS]),
      shared_per_task=prompt_set.shared_per_task)
