"""Evaluation during training: the dev split every EvalConfig.period steps, and the
best prompt so far kept in MODEL_DIR/best/ with best.json (its scores and step).
"""

import functools
import json
import logging

import jax

from mpt_jax.runtime import evaluation
from mpt_jax.runtime import metric_writers
from mpt_jax.runtime.configs import EvalConfig
from mpt_jax.runtime.model_dir import ModelDir
from mpt_jax.runtime.setup import RunSetup

class DevEvaluation:
  """Evaluates the trainable prompt on the dev split and keeps the best one."""

  def __init__(self, setup: RunSetup, model_dir: ModelDir, config: EvalConfig,
               feature_lengths, default_batch_size: int):
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
    self.predict, self.score = evaluation.mesh_eval_fns(setup, feature_lengths["targets"])
    self.evaluator = evaluation.TaskEvaluator(
        {name: setup.task_names.index(name) for name in tasks}, config.split,
        feature_lengths, config.batch_size or default_batch_size,
        rank_classification=config.rank_classification, num_examples=config.num_examples)
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

  def __call__(self, trainable, step: int) -> dict:
    """{task: {metric: value}} of the prompt at `step`; saves it if it is the best."""
    results = self.evaluator.evaluate(lambda b: self.predict(trainable, b),
                                      lambda b: self.score(trainable, b), step=step)
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
    logging.info("eval at step %d: %s = %.4f (best %.4f at step %d)", step,
                 self.best_metric, value, self.best["value"], self.best["step"])
    return results

  def close(self) -> None:
    if "writer" in self.__dict__:
      self.writer.close()
