r"""Evaluates saved prompts on tasks' validation and test splits, without training.

  python -m mpt_jax.eval --gin_file=runs/eval.gin \
    --gin.PROMPTS="'/tmp/mpt/adapt'" --gin.MODEL_DIR="'/tmp/mpt/adapt/eval'"

PROMPTS is a prompt file, a PEFT adapter directory, or a run's MODEL_DIR (its best
prompt if it kept one, else its final prompt), or a list of them. Results go to
MODEL_DIR/results.json, or, with several prompts, beside each (a run's
`eval/results.json`).
"""

import json
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
             partitioner: Optional[Partitioner] = None):
  """{'results': {split: {task: {metric: value}}}, ...} for saved prompts.

  The backbone is loaded once for all of `prompts`. EvalConfig's `tasks` default to
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
  summaries = []
  for (path, results_file), prompt_set in zip(runs, prompt_sets):
    summary = _evaluate_one(path, prompt_set, loaded, placed, splits, task_feature_lengths,
                            config, model, partitioner)
    if jax.process_index() == 0:
      out = paths.as_path(model_dir) / "results.json" if model_dir else results_file
      out.parent.mkdir(parents=True, exist_ok=True)
      out.write_text(json.dumps(summary, indent=2))
    summaries.append(summary)
  return summaries if several else summaries[0]


def _evaluate_one(path, prompt_set: PromptSet, backbone: Backbone, placed_backbone, splits,
                  task_feature_lengths, config: EvalConfig, model: ModelConfig,
                  partitioner) -> dict:
  setup = setup_lib.build_setup(backbone, prompt_set.task_names,
                                factories.module_for(prompt_set), model, partitioner,
                                placed_backbone=placed_backbone)
  trainable = partitioner.place(setup.initial_prompt, setup.prompt_shardings)
  predict, score = evaluation_lib.mesh_eval_fns(setup, task_feature_lengths["targets"])
  single = prompt_set.kind == prompt_modules.SinglePrompt.kind  # serves any task
  task_ids = {name: 0 if single else prompt_set.task_index(name)
              for name in (config.tasks or prompt_set.task_names)}
  results = {}
  for split in splits:
    evaluator = evaluation_lib.TaskEvaluator(
        task_ids, split, task_feature_lengths, config.batch_size or DEFAULT_BATCH_SIZE,
        rank_classification=config.rank_classification, num_examples=config.num_examples)
    results[split] = evaluator.evaluate(lambda b: predict(trainable, b),
                                        lambda b: score(trainable, b))
  return {"prompts": str(path), "backbone": backbone.source, "results": results,
          "average": {s: evaluation_lib.average_score(r) for s, r in results.items()}}


def main(argv):
  cli.start(argv)
  evaluate()


if __name__ == "__main__":
  cli.run(main)
