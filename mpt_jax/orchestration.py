"""The whole MPT method as one command: stages 1 -> 2 -> 3 -> evaluation.

Each stage is a separate process (`mpt_jax.train`, `mpt_jax.eval`, and for the
offline demo `mpt_jax.pretrain` first), launched with the stage's gin file, the
pipeline's shared gin files and bindings. A stage whose output is complete is
skipped; one that was interrupted resumes from its latest checkpoint, because
rerunning a training command resumes it. The pipeline ends by writing
ROOT_DIR/results.{md,csv,json} and the training curves in ROOT_DIR/curves.png.

Layout of ROOT_DIR: backbone/ (stage 0), teachers/, distill/, and
adapt/<method>/<setting>/seed<N>/ for each target run, with eval/results.json inside.
"""

import dataclasses
import logging
import os
import subprocess
import sys
from typing import Mapping, Optional, Sequence

from etils import epath
import gin

from mpt_jax import cli
from mpt_jax.io import files
from mpt_jax import results as results_lib
from mpt_jax import trainer
from tasks import registry

# Each method's gin file for stage 3, and what it needs from the earlier stages.
METHODS = {
    "prompt_tuning": "runs/prompt_tuning.gin",
    "spot": "runs/spot.gin",
    "mpt": "runs/adapt.gin",
    "mpt_multitarget": "runs/adapt_multitarget.gin",
}


@dataclasses.dataclass(frozen=True)
class Run:
  """One stage-3 training: a method, a data setting and a seed."""
  method: str
  setting: str  # "full" or "k<k>_d<draw>"
  seed: int

  def directory(self, root: epath.Path) -> epath.Path:
    return root / "adapt" / self.method / self.setting / f"seed{self.seed}"


def _binding(name: str, value) -> str:
  return f"{name}={value!r}"


class Launcher:
  """Starts stage processes with the pipeline's gin files, bindings and caches."""

  def __init__(self, root: epath.Path, gin_files: Sequence[str], bindings: Sequence[str]):
    self.root = root
    self.gin_files = list(gin_files)
    self.bindings = list(bindings)
    # Identical programs (same shapes, same prompt kind) compile once for all stages.
    self.env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(root / ".jax_cache"),
                "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}

  def run(self, name: str, module: str, gin_files: Sequence[str], bindings: Sequence[str],
          done: epath.Path, shared: bool = True) -> None:
    """Runs a stage unless `done` exists; `shared` adds the pipeline's gin files."""
    if done.exists():
      logging.info("[%s] already complete (%s); skipping", name, done)
      return
    command = [sys.executable, "-m", module]
    command += [f"--gin_file={f}" for f in [*gin_files, *(self.gin_files if shared else [])]]
    command += [f"--gin_bindings={b}" for b in [*bindings, *(self.bindings if shared else [])]]
    command += cli.forwarded_flags()
    logging.info("[%s] starting: %s", name, " ".join(command[2:]))
    completed = subprocess.run(command, env=self.env, check=False)
    if completed.returncode != 0 or not done.exists():
      raise RuntimeError(f"Stage {name} failed (exit code {completed.returncode}); its "
                         f"output is in {done.parent}. Fix the cause and rerun the same "
                         "command: finished stages are skipped, this one resumes.")


@gin.configurable
def run_pipeline(root_dir: str = gin.REQUIRED, *, backbone: Optional[str] = None,
                 gin_files: Sequence[str] = (), bindings: Sequence[str] = (),
                 task_modules: Sequence[str] = ("tasks.catalog",),
                 source_mixture: str = gin.REQUIRED, target_mixture: str = gin.REQUIRED,
                 methods: Sequence[str] = ("prompt_tuning", "spot", "mpt"),
                 few_shot_ks: Sequence[int] = (), few_shot_draws: int = 1,
                 seeds: Sequence[int] = (0,), spot_sources=None,
                 stage_bindings: Optional[Mapping[str, Sequence[str]]] = None,
                 pretrain_gin_files: Sequence[str] = (), pretrain_dir: Optional[str] = None,
                 eval_splits: Sequence[str] = ("validation", "test")) -> epath.Path:
  """Runs (or resumes) every stage, writes the results table; returns ROOT_DIR.

  `backbone` is a HuggingFace or T5X checkpoint; when None, stage 0 pretrains one
  with `pretrain_gin_files` into `pretrain_dir` (default ROOT_DIR/backbone), where a
  later run finds it (the offline demo). `stage_bindings` adds bindings per
  stage: keys 'pretrain', 'teachers', 'distill', each method, 'few_shot' and 'eval'.
  `spot_sources` maps each target task to the teacher it starts from (SPoT).
  """
  root = files.as_path(root_dir)
  root.mkdir(parents=True, exist_ok=True)
  unknown = sorted(set(methods) - set(METHODS))
  if unknown:
    raise ValueError(f"Unknown methods {unknown}; choose from {sorted(METHODS)}.")
  trainer.import_modules(task_modules)
  targets = registry.task_names(target_mixture)
  registry.task_names(source_mixture)  # fails now, with close names, if unknown
  extra = dict(stage_bindings or {})
  launch = Launcher(root, gin_files, [_binding("TASK_MODULES", list(task_modules)),
                                      *bindings])

  if backbone is None:
    backbone = str(files.as_path(pretrain_dir or root / "backbone"))
    launch.run("pretrain", "mpt_jax.pretrain", pretrain_gin_files,
               [_binding("MODEL_DIR", backbone), *extra.get("pretrain", ())],
               files.as_path(backbone) / "model.safetensors", shared=False)
  common = [_binding("BACKBONE", backbone)]

  teachers, distill = root / "teachers", root / "distill"
  launch.run("teachers", "mpt_jax.train", ["runs/teachers.gin"],
             [*common, _binding("MODEL_DIR", str(teachers)),
              _binding("SOURCE_MIXTURE", source_mixture), *extra.get("teachers", ())],
             teachers / "prompts.safetensors")
  launch.run("distill", "mpt_jax.train", ["runs/distill.gin"],
             [*common, _binding("MODEL_DIR", str(distill)),
              _binding("SOURCE_MIXTURE", source_mixture),
              _binding("TEACHER_PROMPTS", str(teachers / "prompts.safetensors")),
              *extra.get("distill", ())],
             distill / "prompts.safetensors")

  settings = ["full"] + [f"k{k}_d{d}" for k in few_shot_ks for d in range(few_shot_draws)]
  runs = [Run(m, s, seed) for seed in seeds for s in settings for m in methods]
  for run in runs:
    directory = run.directory(root)
    bindings = [*common, _binding("MODEL_DIR", str(directory)),
                _binding("TARGET_MIXTURE", target_mixture), _binding("SEED", run.seed),
                _binding("TEACHER_PROMPTS", str(teachers / "prompts.safetensors")),
                _binding("SOURCE_PROMPTS", str(distill / "prompts.safetensors")),
                _binding("SPOT_SOURCES", spot_sources), *extra.get(run.method, ())]
    stage_files = [METHODS[run.method]]
    if run.setting != "full":
      k, draw = (int(part[1:]) for part in run.setting.split("_"))
      stage_files.append("runs/few_shot.gin")
      bindings += [_binding("TARGET_TASKS", targets), _binding("FEW_SHOT_K", k),
                   _binding("FEW_SHOT_SEED", draw), *extra.get("few_shot", ())]
    launch.run(f"{run.method} {run.setting} seed {run.seed}", "mpt_jax.train", stage_files,
               bindings, directory / "prompts.safetensors")

  pending = [str(r.directory(root)) for r in runs
             if not (r.directory(root) / "eval" / "results.json").exists()]
  if pending:
    launch.run("evaluate", "mpt_jax.eval", ["runs/eval.gin"],
               [*common, _binding("PROMPTS", pending), "MODEL_DIR=None",
                _binding("evaluate.splits", tuple(eval_splits)), *extra.get("eval", ())],
               files.as_path(pending[-1]) / "eval" / "results.json")
  if _leads():
    table = results_lib.collect(root, [dataclasses.asdict(r) for r in runs], targets)
    results_lib.write(root, table)
    results_lib.plot_curves(root, [teachers, distill] + [r.directory(root) for r in runs])
  return root


def _leads() -> bool:
  """Whether this copy of a multi-host pipeline writes the results (process 0 does)."""
  return (cli.FLAGS.process_index or 0) == 0 and os.environ.get("SLURM_PROCID", "0") == "0"
