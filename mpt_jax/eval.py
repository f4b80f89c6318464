r"""Evaluates saved prompts on tasks' validation and test splits, without training.

  python -m mpt_jax.eval --gin_file=runs/eval.gin \
    --gin.PROMPTS="'/tmp/mpt/adapt'" --gin.MODEL_DIR="'/tmp/mpt/adapt/eval'"

PROMPTS is a prompt file, a PEFT adapter directory, or a run's MODEL_DIR (its best
prompt if it kept one, else its final prompt), or a list of them, evaluated together.
Results go to MODEL_DIR/results.json, or, with several prompts, beside each (a run's
`eval/results.json`).
"""

import json
import logging
import os
from typing import Mapping, Optional, Sequence, Union

from absl import flags
import gin
import jax

from mpt_jax import cli
from mpt_jax import paths
from mpt_jax.backbone.loading import Backbone
from mpt_jax.backbone.loading import load_backbone
from mpt_jax.prompts import factories
from mpt_jax.prompts import modules as prompt_modules
from mpt_jax.prompts.loading import check_backbone
from mpt_jax.prompts.loading import load_prompts
from mpt_jax.prompts.prompt_set import PromptSet
from mpt_jax.runtime import data_checks
from mpt_jax.runtime import evaluation as evaluation_lib
from mpt_jax.runtime import setup as setup_lib
from mpt_jax.runtime.configs import EvalConfig
from mpt_jax.runtime.configs import ModelConfig
from mpt_jax.runtime.model_dir import resolve_prompts
from mpt_jax.runtime.partitioning import Partitioner

flags.adopt_module_key_flags(cli)  # --help lists the shared flags

DEFAULT_BATCH_SIZE = 32


@gin.configurable
def evaluate(model_dir: Optional[str] = None, *, prompts: Union[str, Sequence[str]] = gin.REQUIRED,
             backbone: Union[str, Backbone] = gin.REQUIRED,
             task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
             splits: Sequence[str] = ("validation", "test"),
             evaluation: Optional[EvalConfig] = None,
             model: Optional[ModelConfig] = None,
             partitioner: Optional[Partitioner] = None, max_prompts_per_bank: int = 32):
  """{'results': {split: {task: {metric: value}}}, ...} for saved prompts.

  The backbone is loaded once for all of `prompts`, and prompts of one kind and shape
  are evaluated together as banks of at most `max_prompts_per_bank` (their rows decode
  in shared batches, each task's data is read once). EvalConfig's `tasks` default to
  each prompt file's tasks; its `batch_size` to 32.
  """
  several = not isinstance(prompts, (str, os.PathLike))
  if several and model_dir is not None:
    raise ValueError("With several prompts, results go beside each; leave MODEL_DIR unset.")
  config = evaluation or EvalConfig()
  runs = [resolve_prompts(entry) for entry in (prompts if several else [prompts])]
  prompt_sets = [load_prompts(path) for path, _ in runs]
  tasks = {name: None for p in prompt_sets for name in (config.tasks or p.task_names)}
  for split in splits:  # every prompt's data, before the backbone loads
    data_checks.check_tasks(list(tasks), split, task_feature_lengths)
  loaded = backbone if isinstance(backbone, Backbone) else load_backbone(backbone)
  for (path, _), prompt_set in zip(runs, prompt_sets):
    check_backbone(prompt_set, path, loaded)
  partitioner = partitioner or Partitioner()
  model = model or ModelConfig()
  placed = setup_lib.place_backbone(loaded, partitioner, model)  # once for all the prompts
  setups = [setup_lib.build_setup(loaded, p.task_names, factories.module_for(p), model,
                                  partitioner, placed_backbone=placed) for p in prompt_sets]
  eval_data = {}  # a task split read once for every prompt
  summaries = [None] * len(runs)
  for bank in _banks(setups, max_prompts_per_bank):
    results = _evaluate_bank([setups[i] for i in bank], [prompt_sets[i] for i in bank],
                             splits, task_feature_lengths, config, eval_data)
    for i, result in zip(bank, results):
      summaries[i] = {"prompts": str(runs[i][0]), "backbone": loaded.source,
                      "results": result,
                      "average": {s: evaluation_lib.average_score(r) for s, r in result.items()}}
      logging.info("%s: %s", runs[i][0], ", ".join(
          f"{split} average {value:.2f}" for split, value in summaries[i]["average"].items()))
  if jax.process_index() == 0:
    for (_, results_file), summary in zip(runs, summaries):
      out = paths.as_path(model_dir) / "results.json" if model_dir else results_file
      out.parent.mkdir(parents=True, exist_ok=True)
      out.write_text(json.dumps(summary, indent=2))
  return summaries if several else summaries[0]


def _banks(setups: Sequence[setup_lib.RunSetup], size: int) -> list[list[int]]:
  """The prompts' indices in banks of one prompt kind and shape, at most `size` each."""
  if size < 1:
    raise ValueError(f"evaluate.max_prompts_per_bank is {size}; it must be >= 1.")
  groups = {}
  for i, setup in enumerate(setups):
    shape = (type(setup.prompt_module).__name__,
             str(jax.tree.map(lambda x: x.shape, setup.initial_prompt)))
    groups.setdefault(shape, []).append(i)
  return [group[start:start + size] for group in groups.values()
          for start in range(0, len(group), size)]


def _evaluate_bank(setups, prompt_sets: Sequence[PromptSet], splits, task_feature_lengths,
                   config: EvalConfig, eval_data: dict) -> list[dict]:
  """Each prompt's {split: {task: {metric: value}}}, the prompts decoding together."""
  lead = setups[0]
  trainables = [lead.partitioner.place(s.initial_prompt, s.prompt_shardings) for s in setups]
  predict, score = evaluation_lib.bank_eval_fns(lead, task_feature_lengths["targets"])
  results = [{} for _ in setups]
  for split in splits:
    evaluators = [evaluation_lib.TaskEvaluator(
        _task_ids(prompt_set, config), split, task_feature_lengths,
        config.batch_size or DEFAULT_BATCH_SIZE, rank_classification=config.rank_classification,
        num_examples=config.num_examples, data=eval_data) for prompt_set in prompt_sets]
    for result, by_task in zip(results, evaluation_lib.evaluate_bank(
        evaluators, lambda b: predict(trainables, b), lambda b: score(trainables, b))):
      result[split] = by_task
  return results


def _task_ids(prompt_set: PromptSet, config: EvalConfig) -> dict[str, int]:
  single = prompt_set.kind == prompt_modules.SinglePrompt.kind  # serves any task
  return {name: 0 if single else prompt_set.task_index(name)
          for name in (config.tasks or prompt_set.task_names)}


def main(argv):
  cli.start(argv)
  evaluate()


if __name__ == "__main__":
  cli.run(main)
