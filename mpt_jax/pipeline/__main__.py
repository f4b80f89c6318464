r"""The whole MPT method as one command: stages 1 -> 2 -> 3 -> evaluation -> results.

  python -m mpt_jax.pipeline --gin_file=pipelines/demo.gin            # `make demo`
  python -m mpt_jax.pipeline --gin_file=pipelines/paper_t5_base.gin \
    --gin.ROOT_DIR="'gs://my-bucket/mpt/paper'" --tfds_data_dir=gs://my-bucket/tfds

Each stage is a separate process (`mpt_jax.train`, `mpt_jax.eval`, and for the
offline demo `mpt_jax.pipeline.pretraining` first) launched with the stage's gin
file and the pipeline's shared gin files and bindings. Rerunning the same command
skips finished stages and resumes an interrupted one. The pipeline ends by writing
ROOT_DIR/results.{md,csv,json} and ROOT_DIR/curves.png (layout: `run_dirs`).
"""

import sys
import time
from typing import Mapping, Optional, Sequence

from absl import flags
from absl import logging
import gin

from mpt_jax import cli
from mpt_jax import paths
from mpt_jax.backbone import huggingface
from mpt_jax.pipeline import curves
from mpt_jax.pipeline import results
from mpt_jax.pipeline import run_dirs
from mpt_jax.pipeline.stages import binding
from mpt_jax.pipeline.stages import StageLauncher
from mpt_jax.pipeline.stages import StagePreemptedError
from mpt_jax.runtime import preemption
from tasks import registry

flags.adopt_module_key_flags(cli)  # --help lists the shared flags

# Each stage-3 method's gin file.
METHODS = {
    "prompt_tuning": "runs/prompt_tuning.gin",
    "spot": "runs/spot.gin",
    "mpt": "runs/adapt.gin",
    "mpt_multitarget": "runs/adapt_multitarget.gin",
}
# The prompt each method trains: methods of one prompt (PT and SPoT differ only in where
# their prompt bank starts) share a job, whose runs train in run banks.
PROMPT_OF_METHOD = {"prompt_tuning": "prompt_bank", "spot": "prompt_bank",
                    "mpt": "mpt", "mpt_multitarget": "mpt_multitarget"}


def jobs(runs: Sequence[run_dirs.AdaptRun]) -> dict[str, list[run_dirs.AdaptRun]]:
  """Stage 3's runs by the prompt they train, one job each ('prompt_bank', 'mpt', ...).
  Within a job, runs that share their settings (full data, or few-shot, whose steps
  differ) train as banks (`mpt_jax.train`'s sweeps)."""
  grouped: dict[str, list[run_dirs.AdaptRun]] = {}
  for run in runs:
    grouped.setdefault(PROMPT_OF_METHOD[run.method], []).append(run)
  return grouped


class _Stages:
  """Each stage's command line, run unless the file that marks it done exists."""

  def __init__(self, launcher: StageLauncher, root: run_dirs.PipelineDir, backbone: str,
               stage_bindings: Mapping[str, Sequence[str]], task_modules: Sequence[str]):
    self.launcher = launcher
    self.root = root
    self.task_modules = list(task_modules)
    self.backbone = binding("BACKBONE", backbone)
    self.extra = dict(stage_bindings)

  def _train(self, name: str, gin_files, run_dir, bindings) -> None:
    self.launcher.run(name, self.launcher.command("mpt_jax.train", gin_files, [
        self.backbone, binding("MODEL_DIR", str(run_dir)), *bindings]),
                      [run_dir.final_prompts])

  def teachers(self, source_mixture: str) -> None:
    self._train("teachers", ["runs/teachers.gin"], self.root.teachers,
                [binding("SOURCE_MIXTURE", source_mixture), *self.extra.get("teachers", ())])

  def distill(self, source_mixture: str) -> None:
    self._train("distill", ["runs/distill.gin"], self.root.distill, [
        binding("SOURCE_MIXTURE", source_mixture),
        binding("TEACHER_PROMPTS", str(self.root.teachers.final_prompts)),
        *self.extra.get("distill", ())])

  def adapt_run(self, run: run_dirs.AdaptRun, target_mixture: str, targets: Sequence[str],
                spot_sources) -> dict:
    """A stage-3 run as its own `mpt_jax.train` would take it: a name, gin files and
    bindings (the pipeline's shared ones included)."""
    gin_files = [METHODS[run.method]]
    bindings = [self.backbone, binding("MODEL_DIR", str(self.root.adapt(run))),
                binding("TARGET_MIXTURE", target_mixture), binding("SEED", run.seed),
                binding("TEACHER_PROMPTS", str(self.root.teachers.final_prompts)),
                binding("SOURCE_PROMPTS", str(self.root.distill.final_prompts)),
                binding("SPOT_SOURCES", spot_sources), *self.extra.get(run.method, ())]
    if run.setting.k is not None:
      gin_files.append("runs/few_shot.gin")
      bindings += [binding("TARGET_TASKS", list(targets)),
                   binding("FEW_SHOT_K", run.setting.k),
                   binding("FEW_SHOT_SEED", run.setting.draw), *self.extra.get("few_shot", ())]
    return {"name": f"{run.method}/{run.setting.name}/seed{run.seed}",
            "gin_files": [*gin_files, *self.launcher.gin_files],
            "bindings": [*bindings, *self.launcher.bindings]}

  def adapt_job(self, name: str, runs: Sequence[run_dirs.AdaptRun], target_mixture: str,
                targets: Sequence[str], spot_sources, max_runs_per_bank: int) -> None:
    """Stage-3 runs trained as one job (`mpt_jax.train` with `sweep.runs`), in banks of
    runs that can share a step, each run in its own directory as if launched alone; the
    job's gin file, plan and summary are kept in ROOT_DIR/adapt/banks/<name>/."""
    home = self.root.bank(name)
    home.mkdir(parents=True, exist_ok=True)
    listed = [self.adapt_run(run, target_mixture, targets, spot_sources) for run in runs]
    gin_file = home / "bank.gin"
    gin_file.write_text(
        f"# Stage 3's {name} runs ({len(runs)}) as one job of run banks, written by the "
        "pipeline.\n"
        f"MODEL_DIR = {str(home)!r}\nTASK_MODULES = {self.task_modules!r}\n"
        f"sweep.model_dir = %MODEL_DIR\nsweep.max_runs_per_bank = {max_runs_per_bank}\n"
        f"sweep.runs = {listed!r}\n")
    self.launcher.run(f"{name}: {len(runs)} runs", self.launcher.command(
        "mpt_jax.train", [str(gin_file)], [], shared=False),
                      [self.root.adapt(run).final_prompts for run in runs])

  def evaluate(self, runs: Sequence[run_dirs.AdaptRun], splits: Sequence[str]) -> None:
    """One eval process for every run not evaluated yet (the backbone loads once)."""
    pending = [self.root.adapt(run) for run in runs
               if not self.root.adapt(run).eval_results.exists()]
    if pending:
      self.launcher.run("evaluate", self.launcher.command("mpt_jax.eval", ["runs/eval.gin"], [
          self.backbone, binding("PROMPTS", [str(run_dir) for run_dir in pending]),
          "MODEL_DIR=None", binding("evaluate.splits", tuple(splits)),
          *self.extra.get("eval", ())]), [run.eval_results for run in pending])


def _pretrain(launcher: StageLauncher, directory, gin_files, bindings) -> str:
  """Stage 0: a backbone pretrained into `directory` (once; later runs reuse it)."""
  directory = paths.as_path(directory)
  launcher.run("pretrain", launcher.command(
      "mpt_jax.pipeline.pretraining", gin_files,
      [binding("MODEL_DIR", str(directory)), *bindings], shared=False),
               [directory / huggingface.WEIGHTS_FILE])
  return str(directory)


@gin.configurable
def run_pipeline(root_dir: str = gin.REQUIRED, *, source_mixture: str = gin.REQUIRED,
                 target_mixture: str = gin.REQUIRED, backbone: Optional[str] = None,
                 task_modules: Sequence[str] = (), gin_files: Sequence[str] = (),
                 bindings: Sequence[str] = (),
                 methods: Sequence[str] = ("prompt_tuning", "spot", "mpt"),
                 few_shot_ks: Sequence[int] = (), few_shot_draws: int = 1,
                 seeds: Sequence[int] = (0,),
                 few_shot_seeds: Optional[Sequence[int]] = None, spot_sources=None,
                 stage_bindings: Optional[Mapping[str, Sequence[str]]] = None,
                 pretrain_gin_files: Sequence[str] = (), pretrain_dir: Optional[str] = None,
                 eval_splits: Sequence[str] = ("validation", "test"),
                 stage_flags: Sequence[str] = (), max_runs_per_bank: int = 32,
                 write_results: bool = True) -> run_dirs.PipelineDir:
  """Runs (or resumes) every stage and writes the results table; returns ROOT_DIR.

  `backbone` is a HuggingFace or T5X checkpoint; when None, stage 0 pretrains one
  with `pretrain_gin_files` into `pretrain_dir` (default ROOT_DIR/backbone), where a
  later run finds it (the offline demo). `task_modules` (the TASK_MODULES macro)
  reach every stage. Each method trains once per seed of `seeds` on full data, and once
  per seed of `few_shot_seeds` (default: `seeds`) on each of the `few_shot_draws` draws
  of each k. `stage_bindings` adds bindings per stage: keys 'pretrain',
  'teachers', 'distill', each method, 'few_shot' and 'eval'. `spot_sources` maps
  each target task to the teacher it starts from (SPoT). `stage_flags` are the
  command-line flags every stage gets (data, vocabulary, multi-host). Stage 3 is a job
  per prompt (`jobs`), whose runs train in banks of at most `max_runs_per_bank`, the cap
  that keeps a bank's batch (runs x BATCH_SIZE) within memory. `write_results` is False
  on the processes of a multi-host pipeline but the first.
  """
  unknown = sorted(set(methods) - set(METHODS))
  if unknown:
    raise ValueError(f"Unknown methods {unknown}; choose from {sorted(METHODS)}.")
  if max_runs_per_bank < 1:
    raise ValueError(f"run_pipeline.max_runs_per_bank is {max_runs_per_bank}; it must be "
                     ">= 1.")
  targets = registry.task_names(target_mixture)
  registry.task_names(source_mixture)  # fails now, with close names, if unknown
  root = run_dirs.PipelineDir(root_dir)
  root.root.mkdir(parents=True, exist_ok=True)
  stage_bindings = dict(stage_bindings or {})
  launcher = StageLauncher(gin_files, [binding("TASK_MODULES", list(task_modules)),
                                       *bindings], stage_flags, root.compilation_cache)
  if backbone is None:
    backbone = _pretrain(launcher, pretrain_dir or root.backbone, pretrain_gin_files,
                         stage_bindings.get("pretrain", ()))

  stages = _Stages(launcher, root, backbone, stage_bindings, task_modules)
  stages.teachers(source_mixture)
  stages.distill(source_mixture)
  few_shot_seeds = seeds if few_shot_seeds is None else few_shot_seeds
  runs = [run_dirs.AdaptRun(method, setting, seed)
          for setting in run_dirs.settings(few_shot_ks, few_shot_draws)
          for seed in (seeds if setting.k is None else few_shot_seeds) for method in methods]
  for name, job in jobs(runs).items():
    stages.adapt_job(name, job, target_mixture, targets, spot_sources, max_runs_per_bank)
  stages.evaluate(runs, eval_splits)
  if write_results:
    results.write(root, results.collect(root, runs, targets))
    curves.plot_curves(root.curves, targets, [(run, root.adapt(run)) for run in runs],
                       {"teachers": root.teachers, "distill": root.distill})
  return root


def main(argv):
  cli.start(argv, distributed=False)
  start = time.time()
  try:
    root = run_pipeline(stage_flags=cli.stage_flags(), write_results=cli.is_lead_process())
  except StagePreemptedError as e:
    logging.warning("%s", e)
    sys.exit(preemption.PREEMPTED_EXIT_CODE)
  if root.results("md").exists():
    print(root.results("md").read_text())
  logging.info("Pipeline finished in %.1f minutes; results, curves.png and every run are "
               "in %s.", (time.time() - start) / 60, root.root)


if __name__ == "__main__":
  cli.run(main)
