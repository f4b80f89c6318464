"""The pipeline's curves, the paper's comparison of how fast each method adapts: for every
data setting, one panel per target task with PT, SPoT and MPT on the same axes (the dev
metric at each evaluation), one panel of their smoothed training loss, and the source
stages' loss below. A method's seeds and few-shot draws are drawn as their mean with a
band of ± one standard deviation. Written as a PNG."""

import io
import json
from typing import Mapping, Optional, Sequence

from etils import epath
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from mpt_jax.pipeline.run_dirs import AdaptRun  # pylint: disable=g-import-not-at-top
from mpt_jax.runtime.model_dir import ModelDir  # pylint: disable=g-import-not-at-top
from tasks import few_shot  # pylint: disable=g-import-not-at-top
from tasks import registry  # pylint: disable=g-import-not-at-top

Curve = tuple[list[int], list[float]]
SMOOTHING = 0.6  # TensorBoard's default exponential smoothing of the loss
PANEL_SIZE = (4.0, 3.0)  # inches


def _rows(path: epath.Path) -> list[dict]:
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def training_loss(run_dir: ModelDir) -> Optional[Curve]:
  """(steps, losses) logged in the run's train.jsonl, or None before it logged any."""
  rows = _rows(run_dir.path / "train.jsonl")
  return ([r["step"] for r in rows], [r["loss"] for r in rows]) if rows else None


def smoothed(values: Sequence[float], weight: float = SMOOTHING) -> list[float]:
  """Exponential moving average, debiased at the start as TensorBoard's smoothing is."""
  out, average = [], 0.0
  for i, value in enumerate(values, start=1):
    average = weight * average + (1 - weight) * value
    out.append(average / (1 - weight**i))
  return out


def dev_metric(run_dir: ModelDir, task: str) -> Optional[tuple[str, Curve]]:
  """(metric, (steps, values)) of `task` (or its k-shot variant) in the run's eval.jsonl:
  its primary metric, else the first it reports; None if it was never evaluated."""
  rows = _rows(run_dir.path / "eval.jsonl")
  keys = [k for k in (rows[0] if rows else {}) if few_shot.parent_name(k.split("/")[0]) == task]
  if not keys:
    return None
  primary = registry.primary_metric(task)
  key = next((k for k in keys if k.split("/")[1] == primary), keys[0])
  return key.split("/")[1], ([r["step"] for r in rows], [r[key] for r in rows])


def plot_curves(path: epath.Path, targets: Sequence[str],
                adapt_runs: Sequence[tuple[AdaptRun, ModelDir]],
                source_runs: Mapping[str, ModelDir]) -> epath.Path:
  """Writes the figure to `path`: a row per data setting (the target tasks' dev metric,
  then the training loss), and a row of the source stages' loss."""
  methods = list(dict.fromkeys(run.method for run, _ in adapt_runs))
  colors = {m: f"C{i}" for i, m in enumerate(methods)}
  settings = list(dict.fromkeys(run.setting.group for run, _ in adapt_runs))
  columns = len(targets) + 1
  figure, axes = plt.subplots(len(settings) + 1, columns, squeeze=False,
                              figsize=(PANEL_SIZE[0] * columns,
                                       PANEL_SIZE[1] * (len(settings) + 1)))
  for row, setting in enumerate(settings):
    runs = [(run, d) for run, d in adapt_runs if run.setting.group == setting]
    for column, task in enumerate(targets):
      _plot_dev_metric(axes[row, column], task, setting, runs, colors)
    _plot_adapt_loss(axes[row, -1], setting, runs, colors)
  for column, (stage, run_dir) in enumerate(source_runs.items()):
    loss = training_loss(run_dir)
    if loss is not None:
      ax = axes[-1, column]
      ax.plot(loss[0], smoothed(loss[1]), color="k", linewidth=1)
      _label(ax, f"{stage}: training loss", "loss (smoothed)")
  for ax in axes.flat:
    if not ax.has_data():
      ax.axis("off")
  figure.tight_layout()
  image = io.BytesIO()
  figure.savefig(image, format="png", dpi=100)
  plt.close(figure)
  path.write_bytes(image.getvalue())
  return path


def _label(ax, title: str, ylabel: str) -> None:
  ax.set_title(title, fontsize=9)
  ax.set_xlabel("step")
  ax.set_ylabel(ylabel)
  ax.set_xlim(left=0)


def _mean_and_band(ax, curves_of_runs: Sequence[Curve], color: str, label: str) -> None:
  """One method's runs (seeds, draws) as their mean at the steps they all logged, and a
  band of ± one standard deviation when there are several."""
  steps = sorted(set.intersection(*(set(steps) for steps, _ in curves_of_runs)))
  if not steps:
    return
  values = np.array([[dict(zip(*curve))[step] for step in steps] for curve in curves_of_runs])
  mean = values.mean(axis=0)
  runs = len(curves_of_runs)
  ax.plot(steps, mean, marker="." if len(steps) < 30 else None, color=color, linewidth=1.2,
          label=label if runs == 1 else f"{label} (mean of {runs})")
  if runs > 1:
    spread = values.std(axis=0, ddof=1)
    ax.fill_between(steps, mean - spread, mean + spread, color=color, alpha=0.2,
                    linewidth=0)


def _by_method(runs, curve_of) -> dict[str, list[Curve]]:
  grouped = {}
  for run, run_dir in runs:
    curve = curve_of(run_dir)
    if curve is not None:
      grouped.setdefault(run.method, []).append(curve)
  return grouped


def _plot_dev_metric(ax, task, setting, runs, colors) -> None:
  metrics = {}
  def dev_curve(run_dir):
    found = dev_metric(run_dir, task)
    if found is None:
      return None
    metrics[found[0]] = True
    return found[1]
  for method, method_curves in _by_method(runs, dev_curve).items():
    _mean_and_band(ax, method_curves, colors[method], method)
  if metrics:
    _label(ax, f"{task} ({setting})", f"dev {next(iter(metrics))}")
    ax.legend(fontsize=7)


def _plot_adapt_loss(ax, setting, runs, colors) -> None:
  def smoothed_loss(run_dir):
    loss = training_loss(run_dir)
    return None if loss is None else (loss[0], smoothed(loss[1]))
  for method, method_curves in _by_method(runs, smoothed_loss).items():
    _mean_and_band(ax, method_curves, colors[method], method)
  if ax.has_data():
    _label(ax, f"training loss ({setting})", "loss (smoothed)")
    ax.legend(fontsize=7)
