"""The pipeline's ROOT_DIR layout and its data settings' names, in one place.

ROOT_DIR holds backbone/ (stage 0, when the pipeline pretrains one), teachers/,
distill/, and adapt/<method>/<setting>/seed<N>/ for each stage-3 run (each a
MODEL_DIR, with eval/results.json once evaluated), adapt/banks/<prompt>/ for each job
that trained stage-3 runs in banks (its bank.gin, sweep.json, summary.md); then
results.{md,csv,json} and curves.png.
"""

import dataclasses
from typing import Optional

from etils import epath

from mpt_jax import paths
from mpt_jax.runtime.model_dir import ModelDir

FULL_DATA = "full"


@dataclasses.dataclass(frozen=True)
class Setting:
  """A training-data setting: the full training set, or draw `draw` of k examples
  per target task."""
  k: Optional[int] = None
  draw: int = 0

  @property
  def name(self) -> str:
    """The run directory's name: 'full' or 'k16_d3'."""
    return FULL_DATA if self.k is None else f"k{self.k}_d{self.draw}"

  @property
  def group(self) -> str:
    """The results row, which pools every draw of a k: 'full' or 'k=16'."""
    return FULL_DATA if self.k is None else f"k={self.k}"


def settings(few_shot_ks=(), few_shot_draws: int = 1) -> list[Setting]:
  """Full data, then each k's draws."""
  return [Setting()] + [Setting(k, draw) for k in few_shot_ks for draw in range(few_shot_draws)]


@dataclasses.dataclass(frozen=True)
class AdaptRun:
  """One stage-3 training: a method, a data setting and a seed."""
  method: str
  setting: Setting
  seed: int


class PipelineDir:
  """Paths inside a pipeline's ROOT_DIR."""

  def __init__(self, root: paths.PathLike):
    self.root = paths.as_path(root)
    self.backbone = self.root / "backbone"  # stage 0's, unless the pipeline is given one
    self.teachers = ModelDir(self.root / "teachers")
    self.distill = ModelDir(self.root / "distill")
    self.compilation_cache = self.root / ".jax_cache"
    self.curves = self.root / "curves.png"

  def adapt(self, run: AdaptRun) -> ModelDir:
    return ModelDir(self.root / "adapt" / run.method / run.setting.name / f"seed{run.seed}")

  def bank(self, name: str) -> epath.Path:
    """A stage-3 job's gin file, plan and summary; its runs write to `adapt`'s folders."""
    return self.root / "adapt" / "banks" / name

  def results(self, suffix: str) -> epath.Path:
    """results.md, results.csv or results.json."""
    return self.root / f"results.{suffix}"
