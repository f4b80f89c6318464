"""The gin-configured training loop of every MPT stage.

One process per host runs `train`. The backbone is loaded once, placed on the mesh
and never differentiated: the jitted step takes the gradient of the loss with
respect to the prompt tree only, the backbone (and a distillation run's teacher
prompts) being a separate, non-differentiated argument.
"""

import dataclasses
import importlib
import json
import logging
import math
import time
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from etils import epath
import flax
from flax import serialization
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mpt_jax import api
from mpt_jax.backbone import T5
from mpt_jax import checkpointing
from mpt_jax import evaluation
from mpt_jax import inputs
from mpt_jax import metric_writers
from mpt_jax import models
from mpt_jax import optim
from mpt_jax import prompt_config
from mpt_jax import prompts as prompts_lib
from mpt_jax.io import files
from mpt_jax.io.prompt_file import PromptSet
from mpt_jax.partitioning import Partitioner
from tasks import registry

TASKS_FILE = "tasks.json"


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or inf; the message names the step and the last checkpoint."""


@dataclasses.dataclass
class TrainResult:
  metrics: dict  # of the last step (and the last eval under 'eval')
  prompts: PromptSet  # the final prompt
  setup: "Setup"  # backbone, model and the frozen arrays on the mesh


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any  # the trainable tree: {'prompt': ...}
  opt_state: Any
  rng: jax.Array


def import_modules(names: Sequence[str]) -> None:
  """Imports the modules that register a run's tasks (t5x's MIXTURE_OR_TASK_MODULE)."""
  for name in names:
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise ImportError(f"Cannot import task module {name!r}: {e}") from e


def place(tree, shardings):
  """Host arrays (identical on every process) -> global arrays with `shardings`."""
  def one(value, sharding):
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
  return jax.tree.map(one, tree, shardings)


@dataclasses.dataclass
class Setup:
  """Everything a run builds before its first step, shared by train and eval."""
  backbone: api.Backbone
  task_names: list[str]
  model: models.PromptTuningModel
  partitioner: Partitioner
  frozen: Any  # global arrays: backbone (+ teacher prompts)
  prompt_axes: Any
  initial_trainable: dict


def build_setup(*, backbone: Union[str, api.Backbone], mixture_or_task_name: str,
                prompt: Callable,
                model_cls: Callable, teacher_prompts: Optional[str],
                partitioner: Partitioner, seed: int, dropout_rate: Optional[float],
                dtype: Optional[str], task_names: Optional[Sequence[str]] = None) -> Setup:
  """Loads the backbone and builds the model, failing before any compilation on a bad
  task name, backbone path or prompt file."""
  task_names = list(task_names or registry.task_names(mixture_or_task_name))
  loaded = backbone if isinstance(backbone, api.Backbone) else api.load_backbone(backbone)
  config = loaded.config
  if dropout_rate is not None:
    config = config.replace(dropout_rate=dropout_rate)
  if dtype is not None:
    config = config.replace(dtype=dtype)
  prompt_module = prompt(loaded, task_names)
  teacher = (prompt_config.teacher_bank(teacher_prompts, task_names)
             if teacher_prompts else None)
  if model_cls is models.DistillationModel and teacher is None:
    raise ValueError("DistillationModel needs train.teacher_prompts, the prompt file of "
                     "the teachers run.")
  model = model_cls(config, prompt_module, teacher_prompt=teacher)

  ids = jnp.zeros((1,), jnp.int32)
  prompt_vars = prompt_module.init(jax.random.PRNGKey(seed), ids)
  trainable = {"prompt": flax.core.unfreeze(prompt_vars["params"])}
  frozen_params = dict(loaded.params)
  backbone_axes = jax.eval_shape(lambda: T5(config).init(
      jax.random.PRNGKey(0), jnp.ones((1, 2), jnp.int32), jnp.ones((1, 2), jnp.int32)))
  frozen_axes = dict(backbone_axes["params_axes"])
  if teacher is not None:
    teacher_vars = teacher.init(jax.random.PRNGKey(0), ids)
    frozen_params["teacher_prompt"] = flax.core.unfreeze(teacher_vars["params"])
    frozen_axes["teacher_prompt"] = teacher_vars["params_axes"]
  frozen = place(flax.core.unfreeze(frozen_params), partitioner.param_shardings(frozen_axes))
  return Setup(loaded, task_names, model, partitioner, frozen,
               {"prompt": prompt_vars["params_axes"]}, trainable)


def make_train_step(model, optimizer, use_dropout: bool):
  def train_step(state: TrainState, frozen, batch):
    rng = jax.random.fold_in(state.rng, state.step)

    def loss_of(trainable):
      return model.loss_fn(models.merge(trainable, frozen), batch,
                           rng if use_dropout else None)

    (_, metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "grad_norm": optax.tree.norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics
  return train_step


def prompt_set(setup: Setup, trainable, step: int, kind_metadata: Optional[dict] = None):
  """The trainable prompt as a PromptSet (host arrays, task names, backbone facts)."""
  tree = jax.tree.map(np.asarray, jax.device_get(trainable["prompt"]))
  if "prompt" in tree:
    kind = "single"
  elif "prompts" in tree:
    kind = "bank"
  else:
    kind = "decomposed"
  return PromptSet(kind, tree, setup.task_names, backbone_config=setup.backbone.config.to_dict(),
                   metadata={"step": step, "backbone": setup.backbone.source,
                             "backbone_fingerprint": setup.backbone.fingerprint,
                             **(kind_metadata or {})})


def _eta(seconds: float) -> str:
  seconds = int(seconds)
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
      f"{seconds // 60}m{seconds % 60:02d}s"


def make_eval_fns(setup: Setup, trainable_shardings, max_decode_length: int):
  """Host (predict, score) functions over global numpy batches, for TaskEvaluator."""
  partitioner = setup.partitioner
  frozen_shardings = jax.tree.map(lambda x: x.sharding, setup.frozen)
  shardings = (trainable_shardings, frozen_shardings, partitioner.batch_sharding)
  predict = jax.jit(lambda t, f, b: setup.model.predict_batch(
      models.merge(t, f), b, max_decode_length),
      in_shardings=shardings, out_shardings=partitioner.replicated)
  score = jax.jit(lambda t, f, b: setup.model.score_batch(models.merge(t, f), b),
                  in_shardings=shardings, out_shardings=partitioner.replicated)

  def on_host(jitted):
    def run(trainable, batch):
      global_batch = partitioner.global_batch(_local_rows(batch))
      return np.asarray(jitted(trainable, setup.frozen, global_batch))
    return run
  return on_host(predict), on_host(score)


def _local_rows(batch):
  """This process's equal share of a batch every process holds in full."""
  count, index = jax.process_count(), jax.process_index()
  rows = len(next(iter(batch.values()))) // count
  return {k: v[index * rows:(index + 1) * rows] for k, v in batch.items()}


class Evaluation:
  """Periodic dev evaluation, and keeping the best prompt by a chosen dev metric."""

  def __init__(self, setup: Setup, eval_fns, model_dir: epath.Path, *, split: str,
               tasks: Sequence[str], feature_lengths, batch_size: int,
               rank_classification: bool, best_metric: str):
    unknown = sorted(set(tasks) - set(setup.task_names))
    if unknown:
      raise ValueError(f"Eval tasks {unknown} are not among the run's tasks "
                       f"{setup.task_names}; the prompt has no task id for them.")
    self.setup = setup
    self.predict, self.score = eval_fns
    self.model_dir = model_dir
    self.best_metric = best_metric
    self.evaluator = evaluation.TaskEvaluator(
        {name: setup.task_names.index(name) for name in tasks}, split, feature_lengths,
        batch_size, rank_classification=rank_classification)
    self.writer = metric_writers.create_writer(model_dir, "eval")
    best_file = model_dir / "best.json"
    self.best = json.loads(best_file.read_text()) if best_file.exists() else None

  def metric_value(self, results) -> float:
    if self.best_metric == "average":
      return evaluation.average_score(results)
    task, _, metric = self.best_metric.partition("/")
    if task not in results or metric not in results[task]:
      raise ValueError(f"best_metric {self.best_metric!r} is not among the eval results "
                       f"{ {t: sorted(m) for t, m in results.items()} }.")
    return results[task][metric]

  def __call__(self, trainable, step: int) -> dict:
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
        prompt_set(self.setup, trainable, step, {"best": self.best_metric}).save(
            self.model_dir / "best" / "prompts.safetensors")
        (self.model_dir / "best.json").write_text(json.dumps(self.best, indent=2))
    logging.info("eval at step %d: %s = %.4f (best %.4f at step %d)", step,
                 self.best_metric, value, self.best["value"], self.best["step"])
    return results


@gin.configurable
def train(model_dir: str = gin.REQUIRED, *, backbone: str = gin.REQUIRED,
          mixture_or_task_name: str = gin.REQUIRED,
          task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
          batch_size: int = gin.REQUIRED, train_steps: int = gin.REQUIRED,
          prompt: Callable = prompt_config.decomposed_prompt,
          model_cls: Callable = models.PromptTuningModel,
          teacher_prompts: Optional[str] = None,
          optimizer: Optional[optax.GradientTransformation] = None,
          partitioner: Optional[Partitioner] = None,
          task_modules: Sequence[str] = (),
          seed: int = 0, dropout_rate: Optional[float] = None, dtype: Optional[str] = None,
          stochastic_task_sampling: bool = False, max_tasks_per_batch: Optional[int] = None,
          examples_cap: Optional[int] = None, num_input_shards: Optional[int] = None,
          eval_period: int = 0, eval_split: str = "validation",
          eval_tasks: Optional[Sequence[str]] = None, eval_batch_size: Optional[int] = None,
          rank_classification: bool = False, best_metric: str = "average",
          checkpoint_period: Optional[int] = 100, keep: Optional[int] = 3,
          log_period: int = 10) -> TrainResult:
  """Trains a prompt. Rerunning the same command resumes.

  The run writes to `model_dir`: config.gin, tasks.json, train.jsonl / eval.jsonl and
  TensorBoard events, checkpoints/ (orbax), prompts/step_N.safetensors at every
  checkpoint, prompts.safetensors at the end, and best/ by `best_metric` on the dev
  split ('average' or 'task/metric').
  """
  model_dir = files.as_path(model_dir)
  import_modules(task_modules)
  partitioner = partitioner or Partitioner()
  setup = build_setup(backbone=backbone, mixture_or_task_name=mixture_or_task_name,
                      prompt=prompt, model_cls=model_cls, teacher_prompts=teacher_prompts,
                      partitioner=partitioner, seed=seed, dropout_rate=dropout_rate,
                      dtype=dtype)
  eval_tasks = list(eval_tasks or setup.task_names)
  num_input_shards = num_input_shards or jax.process_count()
  if batch_size % max(num_input_shards, partitioner.data_parallelism):
    raise ValueError(f"batch_size {batch_size} must divide over {num_input_shards} input "
                     f"shards and {partitioner.data_parallelism} data-parallel devices.")
  optimizer = optimizer or optim.make_optimizer()
  run_facts = {"backbone": setup.backbone.source,
               "backbone_fingerprint": setup.backbone.fingerprint,
               "tasks": setup.task_names}
  if jax.process_index() == 0:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.gin").write_text(gin.config_str())
    (model_dir / TASKS_FILE).write_text(json.dumps(run_facts, indent=2))

  # Shardings: the prompt and its optimizer state follow the prompt axes (replicated).
  trainable_shardings = partitioner.param_shardings(setup.prompt_axes)
  replicated = partitioner.replicated
  abstract_state = jax.eval_shape(lambda p: TrainState(
      jnp.int32(0), p, optimizer.init(p), jax.random.PRNGKey(seed)), setup.initial_trainable)
  state_shardings = TrainState(replicated, trainable_shardings,
                               jax.tree.map(lambda _: replicated, abstract_state.opt_state),
                               replicated)
  frozen_shardings = jax.tree.map(lambda x: x.sharding, setup.frozen)
  batch_sharding = partitioner.batch_sharding
  use_dropout = setup.model.config.dropout_rate > 0
  train_step = jax.jit(make_train_step(setup.model, optimizer, use_dropout),
                       in_shardings=(state_shardings, frozen_shardings, batch_sharding),
                       out_shardings=(state_shardings, replicated), donate_argnums=(0,))

  checkpoints = checkpointing.RunCheckpoints(model_dir / "checkpoints", keep=keep)
  position = None
  latest = checkpoints.latest_step()
  if latest is not None:
    saved, data = checkpoints.restore(
        latest, serialization.to_state_dict(abstract_state), run_facts)
    state = serialization.from_state_dict(abstract_state, saved)
    state = place(state, state_shardings)
    position = inputs.DataPosition.from_json(data)
    logging.info("Resuming %s from step %d", model_dir, latest)
  else:
    state = place(TrainState(np.int32(0), setup.initial_trainable,
                             optimizer.init(setup.initial_trainable),
                             np.asarray(jax.random.PRNGKey(seed))), state_shardings)

  rates = inputs.mixing_rates(setup.task_names, mixture_or_task_name, examples_cap, "train")
  shards_per_process = num_input_shards // jax.process_count()
  local_shards = range(jax.process_index() * shards_per_process,
                       (jax.process_index() + 1) * shards_per_process)
  batches = inputs.MixedBatches(
      setup.task_names, rates, task_feature_lengths, batch_size, seed=seed,
      stochastic_task_sampling=stochastic_task_sampling,
      max_tasks_per_batch=max_tasks_per_batch, num_input_shards=num_input_shards,
      local_shards=local_shards, position=position)

  evaluator = None
  if eval_period:
    evaluator = Evaluation(
        setup, make_eval_fns(setup, trainable_shardings, task_feature_lengths["targets"]),
        model_dir, split=eval_split, tasks=eval_tasks, feature_lengths=task_feature_lengths,
        batch_size=eval_batch_size or batch_size, rank_classification=rank_classification,
        best_metric=best_metric)

  writer = metric_writers.create_writer(model_dir, "train")
  loop = _TrainLoop(setup, train_step, state, batches, checkpoints, run_facts, writer,
                    model_dir, train_steps, log_period)
  final = loop.run(checkpoint_period, eval_period, evaluator)
  checkpoints.close()
  writer.close()
  return TrainResult(final, prompt_set(setup, loop.state.params, train_steps), setup)


class _TrainLoop:
  """Steps, logs, checkpoints and evaluates; stops on a non-finite loss."""

  def __init__(self, setup, train_step, state, batches, checkpoints, run_facts, writer,
               model_dir, train_steps, log_period):
    self.setup, self.train_step, self.state = setup, train_step, state
    self.batches, self.checkpoints, self.run_facts = batches, checkpoints, run_facts
    self.writer, self.model_dir = writer, model_dir
    self.train_steps, self.log_period = train_steps, log_period
    self.last_checkpoint = checkpoints.latest_step()

  def save(self, step: int, position: dict) -> None:
    state = serialization.to_state_dict(jax.device_get(self.state))
    self.checkpoints.save(step, state, position, self.run_facts)
    self.checkpoints.wait()
    self.last_checkpoint = step
    if jax.process_index() == 0:
      prompt_set(self.setup, self.state.params, step).save(
          self.model_dir / "prompts" / f"step_{step}.safetensors")

  def run(self, checkpoint_period, eval_period, evaluator) -> dict:
    step = int(jax.device_get(self.state.step))
    start_step, start_time, tokens = step, time.time(), 0
    metrics, position = {}, self.batches.position.to_json()
    while step < self.train_steps:
      local = next(self.batches)
      prompts_lib.check_task_ids(local["task_ids"], len(self.setup.task_names),
                                 self.setup.task_names)
      position = self.batches.position.to_json()
      tokens += int((local["encoder_input_tokens"] > 0).sum() +
                    local["decoder_loss_weights"].sum()) * jax.process_count()
      batch = self.setup.partitioner.global_batch(local)
      self.state, step_metrics = self.train_step(self.state, self.setup.frozen, batch)
      step += 1
      metrics = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
      if not math.isfinite(metrics["loss"]):
        raise NonFiniteLossError(
            f"The loss is {metrics['loss']} at step {step} of {self.model_dir}. Nothing "
            f"after the last good checkpoint (step {self.last_checkpoint}) was saved; "
            "lower the learning rate or check the data, then rerun to resume from it.")
      if step % self.log_period == 0 or step == self.train_steps:
        elapsed = time.time() - start_time
        rate = (step - start_step) / max(elapsed, 1e-9)
        metrics.update(steps_per_second=rate, tokens_per_second=tokens / max(elapsed, 1e-9))
        self.writer.write_scalars(step, metrics)
        logging.info("step %d/%d  loss %.4f  %.2f steps/s  %.0f tokens/s  ETA %s", step,
                     self.train_steps, metrics["loss"], rate, metrics["tokens_per_second"],
                     _eta((self.train_steps - step) / max(rate, 1e-9)))
      if (checkpoint_period and step % checkpoint_period == 0) or step == self.train_steps:
        self.save(step, position)
      if evaluator and ((eval_period and step % eval_period == 0) or
                        step == self.train_steps):
        metrics["eval"] = evaluator(self.state.params, step)
    if jax.process_index() == 0:
      prompt_set(self.setup, self.state.params, step).save(
          self.model_dir / "prompts.safetensors")
    return metrics
