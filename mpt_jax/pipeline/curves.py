"""The pipeline's curves, the paper's comparison of how fast each method adapts: for every
data setting, one panel per target task with PT, SPoT and MPT on the same axes (the dev
metric at each evaluation), one panel of their smoothed training loss, and the source
stages' loss below. Written as a PNG."""

import io
import json
from typing import Mapping, Optional, Sequence

from etils import epath
import matplotlib

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


def _each_method_once(ax) -> None:
  """A legend entry per method, though each has a line per seed and draw."""
  handles = {}
  for line in ax.get_lines():
    handles.setdefault(line.get_label(), line)
  ax.legend(handles.values(), handles.keys(), fontsize=7)


def _plot_dev_metric(ax, task, setting, runs, colors) -> None:
  metric = None
  for run, run_dir in runs:
    found = dev_metric(run_dir, task)
    if found is not None:
      metric, (steps, values) = found
      ax.plot(steps, values, marker=".", color=colors[run.method], label=run.method,
              linewidth=1)
  if metric is not None:
    _label(ax, f"{task} ({setting})", f"dev {metric}")
    _each_method_once(ax)


def _plot_adapt_loss(ax, setting, runs, colors) -> None:
  for run, run_dir in runs:
    loss = training_loss(run_dir)
    if loss is not None:
      ax.plot(loss[0], smoothed(loss[1]), color=colors[run.method], label=run.method,
              linewidth=1)
  if ax.has_data():
    _label(ax, f"training loss ({setting})", "loss (smoothed)")
    _each_method_once(ax)
