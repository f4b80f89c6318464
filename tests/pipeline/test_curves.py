"""Training curves: the loss a run logged in train.jsonl, one panel per stage in a PNG,
runs and panels without logs left out."""

import json
import struct

from etils import epath
import matplotlib.pyplot as plt
import pytest

from mpt_jax.pipeline import curves
from mpt_jax.runtime.model_dir import ModelDir


def _run(directory, losses=None) -> ModelDir:
  """A MODEL_DIR whose train.jsonl logs `losses` {step: loss} (none if None)."""
  run = ModelDir(directory)
  run.path.mkdir(parents=True, exist_ok=True)
  if losses is not None:
    rows = [json.dumps({"step": step, "loss": loss, "learning_rate": 0.3})
            for step, loss in losses.items()]
    (run.path / "train.jsonl").write_text("\n".join(rows) + "\n\n")
  return run


def _png_size(path) -> tuple[int, int]:
  data = epath.Path(path).read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n"
  return struct.unpack(">II", data[16:24])


@pytest.fixture
def figures(monkeypatch):
  """The (figure, axes) of every plt.subplots call the test makes."""
  made = []
  subplots = plt.subplots

  def recording(*args, **kwargs):
    made.append(subplots(*args, **kwargs))
    return made[-1]

  monkeypatch.setattr(plt, "subplots", recording)
  return made


def test_training_loss_reads_steps_and_losses_from_train_jsonl(tmp_path):
  run = _run(tmp_path / "run", {10: 2.5, 20: 1.25, 30: 0.5})
  assert curves.training_loss(run) == ([10, 20, 30], [2.5, 1.25, 0.5])


def test_training_loss_is_none_before_a_run_logs(tmp_path):
  assert curves.training_loss(_run(tmp_path / "run")) is None
  assert curves.training_loss(ModelDir(tmp_path / "never_made")) is None


def test_plot_curves_writes_one_panel_per_stage_with_a_curve_per_run(tmp_path, figures):
  panels = {"teachers": [("teachers", _run(tmp_path / "t", {1: 3.0, 2: 2.0}))],
            "adapt: mpt": [("full/seed0", _run(tmp_path / "a0", {1: 1.0, 2: 0.5})),
                           ("full/seed1", _run(tmp_path / "a1")),
                           ("k4_d0/seed0", _run(tmp_path / "a2", {5: 0.25}))]}
  path = curves.plot_curves(epath.Path(tmp_path) / "curves.png", panels)
  assert path == epath.Path(tmp_path) / "curves.png"
  assert _png_size(path) == (1000, 350)  # two panels side by side, 5 x 3.5 in at 100 dpi
  (_, axes), = figures
  titles = [ax.get_title() for ax in axes.flat]
  assert titles == ["teachers", "adapt: mpt"]
  adapt = axes.flat[1]
  assert [line.get_label() for line in adapt.get_lines()] == ["full/seed0", "k4_d0/seed0"]
  assert list(adapt.get_lines()[0].get_xdata()) == [1, 2]
  assert list(adapt.get_lines()[0].get_ydata()) == [1.0, 0.5]


def test_a_panel_whose_runs_have_no_logs_is_dropped(tmp_path, figures):
  panels = {"teachers": [("teachers", _run(tmp_path / "t", {1: 3.0}))],
            "distill": [("distill", _run(tmp_path / "d"))]}
  path = curves.plot_curves(epath.Path(tmp_path) / "curves.png", panels)
  assert _png_size(path) == (500, 350)
  (_, axes), = figures
  assert [ax.get_title() for ax in axes.flat] == ["teachers"]


def test_more_than_three_panels_wrap_onto_rows_of_three(tmp_path, figures):
  panels = {f"stage {i}": [("run", _run(tmp_path / str(i), {1: 1.0}))] for i in range(4)}
  path = curves.plot_curves(epath.Path(tmp_path) / "curves.png", panels)
  assert _png_size(path) == (1500, 700)
  (_, axes), = figures
  assert [ax.get_title() for ax in axes.flat] == ["stage 0", "stage 1", "stage 2", "stage 3",
                                                  "", ""]
  assert [ax.axison for ax in axes.flat] == [True, True, True, True, False, False]
