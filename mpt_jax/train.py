r"""Trains a prompt (an MPT stage) from gin files, as t5x.train does; or many runs of
it as one job (a run bank).

  python -m mpt_jax.train \
    --gin_file=runs/teachers.gin --gin_file=smoke/synthetic.gin \
    --gin.MODEL_DIR="'/tmp/mpt/teachers'"

  # 3 learning rates x 3 seeds, one job, each run in MODEL_DIR/<its settings>/:
  python -m mpt_jax.train --gin_file=runs/prompt_tuning.gin ... \
    --gin.sweep.grid="{'make_optimizer.learning_rate': [0.1, 0.3, 1.0], 'SEED': [0, 1, 2]}"

One process per host runs `train`. Rerunning the same command resumes from the
latest good checkpoint in MODEL_DIR; SIGTERM saves one at the current step and exits
with status 75 (`preemption.PREEMPTED_EXIT_CODE`). Any `train(...)` argument can be bound
(`--gin.train.train_steps=100`), and so can the groups it takes
(`--gin.DataConfig.batch_size=16`, `--gin.EvalConfig.period=500`).
"""

import contextlib
import dataclasses
import json
import logging
import sys
from typing import Callable, ContextManager, Optional, Sequence, Union

from absl import flags
import gin
import jax
import jax.numpy as jnp
import optax

from mpt_jax import cli
from mpt_jax import paths
from mpt_jax.backbone.loading import Backbone
from mpt_jax.backbone.loading import load_backbone
from mpt_jax.prompts import factories
from mpt_jax.prompts.prompt_set import PromptSet
from mpt_jax.runtime import data_checks
from mpt_jax.runtime import inputs
from mpt_jax.runtime import loop as loop_lib
from mpt_jax.runtime import optimizers
from mpt_jax.runtime import preemption
from mpt_jax.runtime import run_lock
from mpt_jax.runtime import setup as setup_lib
from mpt_jax.runtime import sweeps
from mpt_jax.runtime.best_prompt import DevEvaluation
from mpt_jax.runtime.best_prompt import RunDevEvaluation
from mpt_jax.runtime.configs import CheckpointConfig
from mpt_jax.runtime.configs import DataConfig
from mpt_jax.runtime.configs import EvalConfig
from mpt_jax.runtime.configs import ModelConfig
from mpt_jax.runtime.model_dir import ModelDir
from mpt_jax.runtime.partitioning import Partitioner
from tasks import few_shot
from tasks import registry

flags.adopt_module_key_flags(cli)  # --help lists the shared flags


@dataclasses.dataclass
class TrainResult:
  metrics: dict  # of the last step (and the last eval under 'eval')
  prompts: Optional[PromptSet]  # the final prompt (None: the run failed in its bank)
  setup: setup_lib.RunSetup  # backbone, model and the frozen arrays on the mesh


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run, as `train`'s gin bindings (or arguments) describe it."""
  model_dir: str
  backbone: Union[str, Backbone]
  train_steps: int
  data: DataConfig
  prompt: Callable  # (backbone, task names) -> prompt module
  model: ModelConfig
  optimizer: optax.GradientTransformation
  partitioner: Partitioner
  checkpointing: CheckpointConfig
  evaluation: EvalConfig
  seed: int
  log_period: int
  # The run's own gin settings, made active while its prompt, data and metrics are built
  # (a sweep's run); by default the settings in force.
  scope: Callable[[], ContextManager] = contextlib.nullcontext


@gin.configurable("train")
def run_spec(model_dir: str = gin.REQUIRED, *, backbone: Union[str, Backbone] = gin.REQUIRED,
             train_steps: int = gin.REQUIRED, data: Optional[DataConfig] = None,
             prompt: Callable = factories.decomposed_prompt,
             model: Optional[ModelConfig] = None,
             optimizer: Optional[optax.GradientTransformation] = None,
             partitioner: Optional[Partitioner] = None,
             checkpointing: Optional[CheckpointConfig] = None,
             evaluation: Optional[EvalConfig] = None, seed: int = 0,
             log_period: int = 10) -> RunSpec:
  """`train`'s settings (its gin name is `train`, as in t5x), the groups it takes filled
  from their gin bindings now."""
  return RunSpec(str(model_dir), backbone, train_steps, data or DataConfig(), prompt,
                 model or ModelConfig(), optimizer or optimizers.make_optimizer(),
                 partitioner or Partitioner(), checkpointing or CheckpointConfig(),
                 evaluation or EvalConfig(), seed, log_period)


def train(*args, **kwargs) -> TrainResult:
  """Trains a prompt; rerunning the same call resumes. Takes `run_spec`'s arguments
  (gin-bound where not given).

  `prompt(backbone, task_names)` makes the prompt module (`factories`). The run writes
  to `model_dir`: config.gin, tasks.json, train.jsonl / eval.jsonl and TensorBoard
  events, checkpoints/ (orbax), prompts/step_N.safetensors at every checkpoint,
  prompts.safetensors at the end, and best/ by `EvalConfig.best_metric`.
  """
  return train_bank([run_spec(*args, **kwargs)])[0]


def _check_batch_size(data: DataConfig, shards: int, partitioner: Partitioner) -> None:
  if data.batch_size % max(shards, partitioner.data_parallelism):
    raise ValueError(f"DataConfig.batch_size {data.batch_size} must divide over {shards} "
                     f"input shards and {partitioner.data_parallelism} data-parallel "
                     "devices.")


def _local_shards(num_input_shards: int) -> range:
  per_process = num_input_shards // jax.process_count()
  return range(jax.process_index() * per_process, (jax.process_index() + 1) * per_process)


# What the runs of a bank must agree on, as (what, value of a spec): they run as one
# program over one backbone, at one batch shape, and step, save and evaluate together.
_SHARED = (
    ("the backbone", lambda s: s.backbone if isinstance(s.backbone, Backbone)
     else str(s.backbone)),
    ("train_steps", lambda s: s.train_steps),
    ("log_period", lambda s: s.log_period),
    ("DataConfig.batch_size", lambda s: s.data.batch_size),
    ("DataConfig.task_feature_lengths", lambda s: dict(s.data.task_feature_lengths)),
    ("DataConfig.num_input_shards", lambda s: s.data.num_input_shards),
    ("ModelConfig", lambda s: s.model),
    ("the mesh (Partitioner)", lambda s: (dict(s.partitioner.mesh.shape),
                                          s.partitioner.rules)),
    ("CheckpointConfig", lambda s: s.checkpointing),
    ("EvalConfig.period", lambda s: s.evaluation.period),
    ("EvalConfig.batch_size", lambda s: s.evaluation.batch_size),
)


def _check_bank(specs: Sequence[RunSpec]) -> None:
  directories = [spec.model_dir for spec in specs]
  repeated = sorted({d for d in directories if directories.count(d) > 1})
  if repeated:
    raise ValueError(f"Runs of a bank need MODEL_DIRs of their own; {repeated} is given "
                     "to more than one.")
  for what, value in _SHARED:
    for spec in specs[1:]:
      if value(spec) != value(specs[0]):
        raise ValueError(
            f"The runs of a bank share {what}: {spec.model_dir} has {value(spec)!r}, "
            f"{specs[0].model_dir} has {value(specs[0])!r}. Run them in separate jobs.")


def _check_same_structure(setups: Sequence[setup_lib.RunSetup], specs) -> None:
  """The runs' prompts must have one structure (the step maps over them) and their
  models one set of settings (the bank has one model)."""
  def structure(setup):
    return (type(setup.prompt_module).__name__, jax.tree.map(lambda x: x.shape,
                                                             setup.initial_prompt),
            setup.prompt_axes)

  def model_settings(setup):
    return type(setup.model).__name__, {k: v for k, v in vars(setup.model).items()
                                        if k != "network"}

  for what, value in (("the prompt's kind, shapes and axes", structure),
                      ("the model's settings", model_settings)):
    for spec, setup in zip(specs[1:], setups[1:]):
      if value(setup) != value(setups[0]):
        raise ValueError(
            f"The runs of a bank share {what}: {spec.model_dir} has {value(setup)}, "
            f"{specs[0].model_dir} has {value(setups[0])}. Run them in separate jobs.")


def _check_data(specs: Sequence[RunSpec], task_names: Sequence[Sequence[str]]) -> None:
  """Everything that can fail on a name or a path fails here, before any compilation:
  each task split the bank reads is checked once (a k-shot task's dev split is its
  parent's)."""
  lead = specs[0]
  data_checks.check_tasks(list(dict.fromkeys(n for names in task_names for n in names)),
                          "train", lead.data.task_feature_lengths, lead.data.batch_size)
  evaluated = {}  # split -> tasks
  for spec, names in zip(specs, task_names):
    if spec.evaluation.period:  # (RunDevEvaluation names eval tasks that are not the run's)
      split = spec.evaluation.split
      for task in spec.evaluation.tasks or names:
        if task in names:
          evaluated.setdefault(split, {})[few_shot.eval_data_task(task, split)] = None
  for split, tasks in evaluated.items():
    data_checks.check_tasks(list(tasks), split, lead.data.task_feature_lengths)


def train_bank(specs: Sequence[RunSpec]) -> list[TrainResult]:
  """Trains runs that share the backbone, the model and the prompt's structure as one
  bank: one process, one compiled step over every run's batch. Each run keeps its own
  tasks, data, seed, prompt initialisation and optimizer, and writes its MODEL_DIR as
  `train` alone would. Rerunning the same call resumes every run together.
  """
  specs = list(specs)
  _check_bank(specs)
  lead = specs[0]
  partitioner = lead.partitioner
  num_input_shards = lead.data.num_input_shards or jax.process_count()
  task_names = []
  for spec in specs:
    with spec.scope():
      _check_batch_size(spec.data, num_input_shards, partitioner)
      task_names.append(registry.task_names(spec.data.mixture_or_task_name))
  with lead.scope():
    _check_data(specs, task_names)
  loaded = lead.backbone if isinstance(lead.backbone, Backbone) else load_backbone(
      lead.backbone)
  placed = setup_lib.place_backbone(loaded, partitioner, lead.model)
  setups = []
  for spec, names in zip(specs, task_names):
    with spec.scope():
      setups.append(setup_lib.build_setup(loaded, names, spec.prompt(loaded, names),
                                          spec.model, partitioner, spec.seed,
                                          placed_backbone=placed))
  _check_same_structure(setups, specs)
  dev_evaluation = None
  if lead.evaluation.period:
    runs, eval_data = [], {}  # a task's dev split is read once for every run
    for spec, setup in zip(specs, setups):
      with spec.scope():
        runs.append(RunDevEvaluation(setup, ModelDir(spec.model_dir), spec.evaluation,
                                     spec.data.task_feature_lengths, spec.data.batch_size,
                                     scope=spec.scope, eval_data=eval_data))
    with lead.scope():
      dev_evaluation = DevEvaluation(runs, lead.data.task_feature_lengths["targets"])
  loop = loop_lib.TrainLoop(
      [loop_lib.LoopRun(setup, spec.optimizer, ModelDir(spec.model_dir), spec.seed)
       for spec, setup in zip(specs, setups)], lead.checkpointing)
  try:
    with contextlib.ExitStack() as locks:
      for spec in specs:
        locks.enter_context(run_lock.held(paths.as_path(spec.model_dir)))
      positions = loop.start()  # a checkpoint of another run is refused before any write
      batches = [_open_batches(spec, setup, position, num_input_shards)
                 for spec, setup, position in zip(specs, setups, positions)]
      finished = loop.run(inputs.BankBatches(batches), lead.train_steps, lead.log_period,
                          dev_evaluation)
  finally:
    loop.close()
    if dev_evaluation:
      dev_evaluation.close()
  return [TrainResult(metrics, final, setup)
          for (metrics, final), setup in zip(finished, setups)]


def _open_batches(spec: RunSpec, setup: setup_lib.RunSetup, position,
                  num_input_shards: int) -> inputs.MixedBatches:
  """The run's input pipeline from `position`, built under its settings, which its
  MODEL_DIR records (config.gin) with its task list (tasks.json)."""
  with spec.scope():
    rates = inputs.mixing_rates(setup.task_names, spec.data.mixture_or_task_name,
                                spec.data.examples_cap, "train")
    batches = inputs.MixedBatches(
        setup.task_names, rates, spec.data.task_feature_lengths, spec.data.batch_size,
        seed=spec.seed, stochastic_task_sampling=spec.data.stochastic_task_sampling,
        max_tasks_per_batch=spec.data.max_tasks_per_batch,
        num_input_shards=num_input_shards, local_shards=_local_shards(num_input_shards),
        position=position).open()
    if jax.process_index() == 0:
      model_dir = ModelDir(spec.model_dir)
      model_dir.config_gin.write_text(gin.config_str())
      model_dir.tasks_json.write_text(json.dumps(setup.run_facts, indent=2))
  return batches


def _variant_spec(command: cli.GinConfig, variant: sweeps.Variant, home: str) -> RunSpec:
  """The variant's run: the command's gin settings, then the variant's, then (unless
  those name its MODEL_DIR) its own directory under the command's MODEL_DIR. Its
  config.gin is a run of its own: the sweep's bindings are cleared in it."""
  config = command.extended(variant.gin_files, (*variant.bindings, *sweeps.NO_SWEEP))
  with config.activate():
    spec = run_spec()
  if spec.model_dir == home:
    own = str(paths.as_path(home) / variant.name)
    for binding in (f"MODEL_DIR = {own!r}", f"train.model_dir = {own!r}"):
      candidate = config.extended((), (binding,))
      with candidate.activate():
        spec = run_spec()
      if spec.model_dir == own:
        config = candidate
        break
  return dataclasses.replace(spec, scope=config.activate)


def _shared_settings(spec: RunSpec) -> str:
  """What a run must share with the others of its bank (`_SHARED`), comparable."""
  return repr([value(spec) for _, value in _SHARED])


def _prompt_structure(spec: RunSpec) -> str:
  """The kind and shapes of the run's prompt (its spec's backbone loaded)."""
  with spec.scope():
    module = spec.prompt(spec.backbone, registry.task_names(spec.data.mixture_or_task_name))
  params = jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1,), jnp.int32))
  return repr((type(module).__name__, jax.tree.map(lambda x: x.shape, params["params"])))


def _banks_of(specs: Sequence[RunSpec], max_runs: Optional[int]) -> list[list[int]]:
  """The sweep's runs (indices) in banks: runs that share what a bank shares and their
  prompt's structure, at most `max_runs` to a bank, in the order they first appear."""
  groups = {}
  for i, spec in enumerate(specs):
    groups.setdefault((_shared_settings(spec), _prompt_structure(spec)), []).append(i)
  size = max_runs or len(specs)
  return [group[start:start + size] for group in groups.values()
          for start in range(0, len(group), size)]


def _ended(spec: RunSpec) -> bool:
  model_dir = ModelDir(spec.model_dir)
  return model_dir.final_prompts.exists() or model_dir.failed_json.exists()


def train_sweep(plan: sweeps.Sweep,
                command: Optional[cli.GinConfig] = None) -> list[Optional[TrainResult]]:
  """Trains each variant of the `command`'s gin settings (default: the command line's)
  as a run of a bank (see `sweeps`), and ranks them in MODEL_DIR/summary.{json,md} once
  they end. Runs that cannot share a step (another TRAIN_STEPS, prompt shape, backbone,
  ...) train in banks of their own, one bank after another, each of at most
  `plan.max_runs_per_bank` runs; a rerun skips the banks whose runs all ended. Returns
  each run's result (None for the runs of a skipped bank or of a bank where one failed).
  """
  command = command or cli.command_gin_config()
  home = plan.model_dir
  if home is None:
    with command.activate():
      home = run_spec().model_dir
  specs = [_variant_spec(command, variant, home) for variant in plan.variants]
  backbones = {}  # each backbone loaded once, for every bank
  for spec in specs:
    if not isinstance(spec.backbone, Backbone) and spec.backbone not in backbones:
      backbones[spec.backbone] = load_backbone(spec.backbone)
  specs = [dataclasses.replace(spec, backbone=backbones.get(spec.backbone, spec.backbone))
           for spec in specs]
  model_dirs = [spec.model_dir for spec in specs]
  if jax.process_index() == 0:
    sweeps.write_plan(home, plan.variants, model_dirs)
  results, failures = [None] * len(specs), []
  banks = _banks_of(specs, plan.max_runs_per_bank)
  for number, bank in enumerate(banks, start=1):
    if all(_ended(specs[i]) for i in bank):
      logging.info("Bank %d of %d (%d runs) already ended; skipping it.", number,
                   len(banks), len(bank))
      failures += [json.loads(ModelDir(specs[i].model_dir).failed_json.read_text())["reason"]
                   for i in bank if ModelDir(specs[i].model_dir).failed_json.exists()]
      continue
    logging.info("Bank %d of %d: %d runs (%s, ...)", number, len(banks), len(bank),
                 specs[bank[0]].model_dir)
    try:
      for i, result in zip(bank, train_bank([specs[i] for i in bank])):
        results[i] = result
    except loop_lib.NonFiniteLossError as e:  # the bank's other runs finished: go on
      failures.append(str(e))
  _summarize(home, plan.variants, model_dirs)
  if failures:
    raise loop_lib.NonFiniteLossError(" ".join(failures))
  return results


def _summarize(home: str, variants: Sequence[sweeps.Variant], model_dirs) -> None:
  if jax.process_index() == 0:
    print(sweeps.write_summary(home, variants, model_dirs))


def main(argv):
  cli.start(argv)
  try:
    plan = sweeps.sweep()
    if plan.variants:
      train_sweep(plan)
    else:
      train()
  except preemption.Preempted as e:
    logging.warning("%s", e)
    sys.exit(preemption.PREEMPTED_EXIT_CODE)


if __name__ == "__main__":
  cli.run(main)
