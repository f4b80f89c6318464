"""Sweeps: many runs of one command as one job (a run bank), each a variant of the
command's gin settings.

  --gin.sweep.grid="{'make_optimizer.learning_rate': [0.1, 0.3], 'SEED': [0, 1, 2]}"

is six runs, named by their settings ('learning_rate=0.1,SEED=0', ...), trained as one
bank: one compiled step over every run's batch. Runs that cannot share a step (another
TRAIN_STEPS or prompt shape, say) train in banks of their own, one after another in the
same job; `sweep.max_runs_per_bank` caps a bank (memory). `sweep.runs` lists runs by
hand instead: [{'name': ..., 'gin_files': [...], 'bindings': [...]}], each run's gin
files parsed after the command's and its bindings after the command's (the pipeline
launches its stage-3 runs this way); with both, every listed run is swept over the
grid. MODEL_DIR (or `sweep.model_dir`) gets sweep.json (the runs and their
directories) when the job starts and summary.{json,md} (the runs ranked by their best
dev metric) when it ends.
"""

import dataclasses
import itertools
import json
from typing import Any, Mapping, Optional, Sequence

import gin

from mpt_jax import paths
from mpt_jax.runtime.model_dir import ModelDir


# Bound in each run's own settings: its config.gin trains that run alone.
NO_SWEEP = ("sweep.grid = None", "sweep.max_runs_per_bank = None", "sweep.model_dir = None",
            "sweep.runs = None")


@dataclasses.dataclass(frozen=True)
class Variant:
  """One run of a sweep: its name and what it adds to the command's gin settings."""
  name: str
  gin_files: tuple[str, ...] = ()
  bindings: tuple[str, ...] = ()


def _short_names(keys: Sequence[str]) -> list[str]:
  """'make_optimizer.learning_rate' -> 'learning_rate', unless two keys would clash."""
  short = [key.rsplit(".", 1)[-1] for key in keys]
  return short if len(set(short)) == len(short) else list(keys)


def grid_variants(grid: Mapping[str, Sequence[Any]]) -> list[Variant]:
  """One variant per combination of the grid's values, in the grid's order."""
  keys = list(grid)
  for key in keys:
    if isinstance(grid[key], (str, bytes)) or not list(grid[key]):
      raise ValueError(f"sweep.grid[{key!r}] must be a non-empty list of values, got "
                       f"{grid[key]!r}.")
  names = _short_names(keys)
  variants = []
  for values in itertools.product(*(list(grid[key]) for key in keys)):
    name = ",".join(f"{n}={str(v).replace('/', '_')}" for n, v in zip(names, values))
    variants.append(Variant(name, (), tuple(f"{k} = {v!r}" for k, v in zip(keys, values))))
  return variants


def _listed(run: Mapping[str, Any]) -> Variant:
  unknown = sorted(set(run) - {"name", "gin_files", "bindings"})
  if unknown or not run.get("name"):
    raise ValueError(f"Each of sweep.runs is {{'name': ..., 'gin_files': [...], "
                     f"'bindings': [...]}} with a name; got {dict(run)!r}.")
  return Variant(str(run["name"]), tuple(run.get("gin_files", ())),
                 tuple(run.get("bindings", ())))


@dataclasses.dataclass(frozen=True)
class Sweep:
  """The runs of a job, where its plan and summary go (None: train's MODEL_DIR), and
  the most runs a bank takes (None: all that can share a step)."""
  variants: list[Variant]
  model_dir: Optional[str] = None
  max_runs_per_bank: Optional[int] = None


@gin.configurable
def sweep(grid: Optional[Mapping[str, Sequence[Any]]] = None,
          runs: Optional[Sequence[Mapping[str, Any]]] = None,
          model_dir: Optional[str] = None,
          max_runs_per_bank: Optional[int] = None) -> Sweep:
  """The job's runs: none unless a grid or runs are bound (then `train` runs alone)."""
  if max_runs_per_bank is not None and max_runs_per_bank < 1:
    raise ValueError(f"sweep.max_runs_per_bank is {max_runs_per_bank}; it must be >= 1 "
                     "(or None: no cap).")
  listed = [_listed(run) for run in runs or ()] or [Variant("")]
  swept = grid_variants(grid) if grid else [Variant("")]
  variants = [Variant(",".join(n for n in (a.name, b.name) if n), a.gin_files + b.gin_files,
                      a.bindings + b.bindings) for a in listed for b in swept]
  if variants == [Variant("")]:
    return Sweep([])
  names = [variant.name for variant in variants]
  repeated = sorted({name for name in names if names.count(name) > 1})
  if repeated:
    raise ValueError(f"The runs of a sweep need different names; {repeated} repeat.")
  return Sweep(variants, model_dir, max_runs_per_bank)


def write_plan(home, variants: Sequence[Variant], model_dirs: Sequence[str]) -> None:
  """MODEL_DIR/sweep.json: each run's name, settings and directory."""
  home = paths.as_path(home)
  home.mkdir(parents=True, exist_ok=True)
  (home / "sweep.json").write_text(json.dumps([
      {"name": v.name, "model_dir": d, "gin_files": list(v.gin_files),
       "bindings": list(v.bindings)} for v, d in zip(variants, model_dirs)], indent=2))


def _run_summary(name: str, model_dir: ModelDir) -> dict:
  row = {"name": name, "model_dir": str(model_dir), "status": "unfinished"}
  if model_dir.failed_json.exists():
    row["status"] = "failed"
  elif model_dir.final_prompts.exists():
    row["status"] = "finished"
  train_log = model_dir.path / "train.jsonl"
  if train_log.exists():
    lines = train_log.read_text().splitlines()
    if lines:
      last = json.loads(lines[-1])
      row["last_step"], row["last_loss"] = last["step"], last["loss"]
  if model_dir.best_json.exists():
    best = json.loads(model_dir.best_json.read_text())
    row.update(best_metric=best["metric"], best_value=best["value"], best_step=best["step"])
  return row


def _rank_key(row: dict):
  """Finished runs by best dev metric (highest first), then by last loss; failed last."""
  return (row["status"] != "finished", -row.get("best_value", float("-inf")),
          row.get("last_loss", float("inf")))


def write_summary(home, variants: Sequence[Variant], model_dirs: Sequence[str]) -> str:
  """Writes MODEL_DIR/summary.{json,md}, the runs ranked; returns the Markdown."""
  home = paths.as_path(home)
  rows = sorted((_run_summary(v.name, ModelDir(d)) for v, d in zip(variants, model_dirs)),
                key=_rank_key)
  (home / "summary.json").write_text(json.dumps(rows, indent=2))
  metric = next((row["best_metric"] for row in rows if "best_metric" in row), None)
  header = f"best dev {metric} (step)" if metric else "best dev metric"
  lines = [f"| rank | run | {header} | last loss (step) | status |", "|---|---|---|---|---|"]
  for rank, row in enumerate(rows, start=1):
    best = (f"{row['best_value']:.2f} ({row['best_step']})" if "best_value" in row else "–")
    last = (f"{row['last_loss']:.4f} ({row['last_step']})" if "last_loss" in row else "–")
    lines.append(f"| {rank} | {row['name']} | {best} | {last} | {row['status']} |")
  text = "\n".join(lines) + "\n"
  (home / "summary.md").write_text(text)
  return text
