"""Evaluation during training: the dev split every EvalConfig.period steps, and each
run's best prompt so far kept in its MODEL_DIR/best/ with best.json (its scores and
step). A bank's runs are evaluated together: their dev sets decode in shared batches.
"""

import contextlib
import functools
import json
import logging
from typing import Callable, ContextManager, Optional, Sequence

import jax

from mpt_jax.runtime import evaluation
from mpt_jax.runtime import metric_writers
from mpt_jax.runtime.configs import EvalConfig
from mpt_jax.runtime.model_dir import ModelDir
from mpt_jax.runtime.setup import RunSetup


class RunDevEvaluation:
  """One run's dev evaluation: its tasks under its task ids, and its best prompt. The
  runs of a bank share `eval_data` (evaluation.TaskEvaluator)."""

  def __init__(self, setup: RunSetup, model_dir: ModelDir, config: EvalConfig,
               feature_lengths, default_batch_size: int,
               scope: Callable[[], ContextManager] = contextlib.nullcontext,
               eval_data: Optional[dict] = None):
    tasks = list(config.tasks or setup.task_names)
    unknown = sorted(set(tasks) - set(setup.task_names))
    if unknown:
      raise ValueError(f"Eval tasks {unknown} are not among the run's tasks "
                       f"{setup.task_names}; the prompt has no task id for them.")
    task, slash, metric = config.best_metric.partition("/")
    if config.best_metric != "average" and not (slash and metric and task in tasks):
      raise ValueError(f"EvalConfig.best_metric {config.best_metric!r} must be 'average' "
                       f"or 'task/metric' with a task evaluated here: {tasks}.")
    self.setup = setup
    self.model_dir = model_dir
    self.period = config.period
    self.best_metric = config.best_metric
    self.scope = scope  # the run's own settings (gin), active while its metrics compute
    self.evaluator = evaluation.TaskEvaluator(
        {name: setup.task_names.index(name) for name in tasks}, config.split,
        feature_lengths, config.batch_size or default_batch_size,
        rank_classification=config.rank_classification, num_examples=config.num_examples,
        data=eval_data)
    self.best = (json.loads(model_dir.best_json.read_text())
                 if model_dir.best_json.exists() else None)

  @functools.cached_property
  def writer(self):
    """Created on the first evaluation: building this object writes nothing."""
    return metric_writers.create_writer(self.model_dir.path, "eval")

  def metric_value(self, results) -> float:
    if self.best_metric == "average":
      return evaluation.average_score(results)
    task, _, metric = self.best_metric.partition("/")
    if task not in results or metric not in results[task]:
      raise ValueError(f"best_metric {self.best_metric!r} is not among the eval results "
                       f"{ {t: sorted(m) for t, m in results.items()} }.")
    return results[task][metric]

  def record(self, trainable, step: int, predictions, scores) -> dict:
    """{task: {metric: value}} of the prompt at `step` from its model outputs; saves the
    prompt if it is the best so far."""
    with self.scope():
      results = self.evaluator.results(predictions, scores, step)
    value = self.metric_value(results)
    scalars = {f"{t}/{m}": v for t, ms in results.items() for m, v in ms.items()}
    self.writer.write_scalars(step, {**scalars, "average": evaluation.average_score(results)})
    self.writer.flush()
    if self.best is None or value > self.best["value"]:
      self.best = {"step": step, "metric": self.best_metric, "value": value,
                   "results": results}
      if jax.process_index() == 0:
        self.setup.prompt_set(trainable, step, best=self.best_metric).save(
            self.model_dir.best_prompts)
        self.model_dir.best_json.write_text(json.dumps(self.best, indent=2))
    logging.info("eval of %s at step %d: %s; %s = %.4f (best %.4f at step %d)",
                 self.model_dir, step, ", ".join(f"{k} {v:.4g}" for k, v in scalars.items()),
                 self.best_metric, value, self.best["value"], self.best["step"])
    return results

  def close(self) -> None:
    if "writer" in self.__dict__:
      self.writer.close()


class DevEvaluation:
  """Evaluates a bank's prompts every `period` steps: every run's dev rows decode in
  shared [R, B] batches, and each run's results and best prompt are its own."""

  def __init__(self, runs: Sequence[RunDevEvaluation], max_decode_length: int):
    periods = {run.period for run in runs}
    if len(periods) != 1:
      raise ValueError(f"The runs of a bank evaluate at the same steps; their "
                       f"EvalConfig.period differ: {sorted(periods)}.")
    self.runs = list(runs)
    self.period = periods.pop()
    self._predict, self._score = evaluation.bank_eval_fns(runs[0].setup, max_decode_length)

  def __call__(self, trainables: Sequence, step: int,
               active: Optional[Sequence[int]] = None) -> dict[int, dict]:
    """{run index: {task: {metric: value}}} of the `active` runs' prompts (default all)."""
    active = list(range(len(self.runs)) if active is None else active)
    prompts = [trainables[i] for i in active]
    outputs = evaluation.bank_outputs([self.runs[i].evaluator for i in active],
                                      lambda batch: self._predict(prompts, batch),
                                      lambda batch: self._score(prompts, batch))
    return {i: self.runs[i].record(trainables[i], step, *output)
            for i, output in zip(active, outputs)}

  def close(self) -> None:
    for run in self.runs:
      run.close()
