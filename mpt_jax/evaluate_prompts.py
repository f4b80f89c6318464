"""Evaluates saved prompts on tasks' splits without training (`mpt_jax.eval`'s job).

A prompt is a prompt file, a PEFT adapter directory, or a run's MODEL_DIR (its best
prompt if it kept one, else its final prompt).
"""

import json
import os
from typing import Mapping, Optional, Sequence, Union

from etils import epath
import gin
import jax

from mpt_jax import api
from mpt_jax import evaluation
from mpt_jax import models
from mpt_jax import prompt_init
from mpt_jax import prompts as prompts_lib
from mpt_jax import trainer
from mpt_jax.io import files
from mpt_jax.io.prompt_file import PromptSet
from mpt_jax.partitioning import Partitioner

def resolve_prompts(path) -> epath.Path:
  """A prompt file or adapter directory as given, or the best/final prompt of a run."""
  path = files.as_path(path)
  for candidate in (path / "best" / "prompts.safetensors", path / "prompts.safetensors"):
    if path.is_dir() and candidate.is_file():
      return candidate
  if not path.exists():
    raise FileNotFoundError(f"Prompts {path} do not exist.")
  return path


def module_for(prompt_set: PromptSet):
  """A prompt module whose parameters start as the saved ones."""
  a = prompt_set.arrays
  if prompt_set.kind == "single":
    return prompts_lib.SinglePrompt(prompt_set.length, prompt_set.embed_dim,
                                    prompt_init.from_array(a["prompt"]))
  if prompt_set.kind == "bank":
    return prompts_lib.PromptBank(prompt_set.num_tasks, prompt_set.length,
                                  prompt_set.embed_dim,
                                  bank_init=prompt_init.from_array(a["prompts"]))
  return prompts_lib.DecomposedPrompt(
      prompt_set.num_tasks, prompt_set.length, prompt_set.embed_dim, prompt_set.rank,
      shared_init=prompt_init.from_array(a[prompts_lib.SHARED]),
      cols_init=prompt_init.from_array(a[prompts_lib.TASK_COLS]),
      rows_init=prompt_init.from_array(a[prompts_lib.TASK_ROWS]),
      shared_per_task=prompt_set.shared_per_task)


def _task_ids(prompt_set: PromptSet, tasks: Sequence[str]) -> dict[str, int]:
  if prompt_set.kind == "single":
    return {name: 0 for name in tasks}
  return {name: prompt_set.task_index(name) for name in tasks}


def results_dir(prompts_path: epath.Path) -> epath.Path:
  """Where a prompt's results go by default: `<run>/eval/` for a run's prompts."""
  run = prompts_path.parent.parent if prompts_path.parent.name == "best" else prompts_path.parent
  return run / "eval"


@gin.configurable
def evaluate(model_dir: Optional[str] = None, *, prompts: Union[str, Sequence[str]] = gin.REQUIRED,
             backbone: str = gin.REQUIRED, task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
             tasks: Optional[Sequence[str]] = None, splits: Sequence[str] = ("validation", "test"),
             batch_size: int = 32, rank_classification: bool = False,
             task_modules: Sequence[str] = (), partitioner: Optional[Partitioner] = None,
             dtype: Optional[str] = None, num_examples: Optional[int] = None):
  """{split: {task: {metric: value}}} for saved prompts, written to
  MODEL_DIR/results.json. `prompts` may list several (runs, files or adapters): the
  backbone is loaded once and each prompt's results go to `results_dir(prompt)`.
  `tasks` defaults to each prompt file's tasks."""
  trainer.import_modules(task_modules)
  several = not isinstance(prompts, (str, os.PathLike))
  if several and model_dir is not None:
    raise ValueError("With several prompts, results go beside each; leave MODEL_DIR unset.")
  loaded = api.load_backbone(backbone)
  partitioner = partitioner or Partitioner()
  summaries = []
  for prompt_path in (prompts if several else [prompts]):
    path = resolve_prompts(prompt_path)
    summary = _evaluate_one(path, loaded, tasks, splits, task_feature_lengths, batch_size,
                            rank_classification, partitioner, dtype, num_examples)
    if jax.process_index() == 0:
      out = files.as_path(model_dir) if model_dir else results_dir(path)
      out.mkdir(parents=True, exist_ok=True)
      (out / "results.json").write_text(json.dumps(summary, indent=2))
    summaries.append(summary)
  return summaries if several else summaries[0]


def _evaluate_one(path, backbone, tasks, splits, task_feature_lengths, batch_size,
                  rank_classification, partitioner, dtype, num_examples) -> dict:
  prompt_set = api.load_prompts(path)
  task_ids = _task_ids(prompt_set, list(tasks or prompt_set.task_names))
  setup = trainer.build_setup(
      backbone=backbone, mixture_or_task_name="", prompt=lambda *_: module_for(prompt_set),
      model_cls=models.PromptTuningModel, teacher_prompts=None, partitioner=partitioner,
      seed=0, dropout_rate=None, dtype=dtype, task_names=list(prompt_set.task_names))
  shardings = setup.partitioner.param_shardings(setup.prompt_axes)
  trainable = trainer.place(setup.initial_trainable, shardings)
  predict, score = trainer.make_eval_fns(setup, shardings, task_feature_lengths["targets"])
  results = {}
  for split in splits:
    evaluator = evaluation.TaskEvaluator(task_ids, split, task_feature_lengths, batch_size,
                                         rank_classification=rank_classification,
                                         num_examples=num_examples)
    results[split] = evaluator.evaluate(lambda b: predict(trainable, b),
                                        lambda b: score(trainable, b))
  return {"prompts": str(path), "backbone": setup.backbone.source, "results": results,
          "average": {s: evaluation.average_score(r) for s, r in results.items()}}
