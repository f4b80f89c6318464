"""The pipeline's training curves: the loss of every stage, one panel per stage (and
per stage-3 method), written as a PNG."""

import io
import json
from typing import Mapping, Sequence

from etils import epath
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from mpt_jax.runtime.model_dir import ModelDir  # pylint: disable=g-import-not-at-top

# {panel title: [(curve label, run)]}
Panels = Mapping[str, Sequence[tuple[str, ModelDir]]]


def training_loss(run_dir: ModelDir):
  """(steps, losses) logged in the run's train.jsonl, or None before it logged any."""
  path = run_dir.path / "train.jsonl"
  if not path.exists():
    return None
  rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  return [r["step"] for r in rows], [r["loss"] for r in rows]


def plot_curves(path: epath.Path, panels: Panels) -> epath.Path:
  """Writes the training loss of each panel's runs to `path` (a PNG)."""
  panels = {title: [(label, curve) for label, run in runs
                    if (curve := training_loss(run)) is not None]
            for title, runs in panels.items()}
  panels = {title: curves for title, curves in panels.items() if curves}
  columns = min(3, max(1, len(panels)))
  rows = -(-len(panels) // columns)
  figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.5 * rows),
                              squeeze=False)
  for ax, (title, curves) in zip(axes.flat, panels.items()):
    for label, (steps, values) in curves:
      ax.plot(steps, values, label=label, linewidth=1)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7)
  for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
  figure.tight_layout()
  image = io.BytesIO()
  figure.savefig(image, format="png", dpi=100)
  plt.close(figure)
  path.write_bytes(image.getvalue())
  return path
