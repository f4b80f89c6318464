"""The pipeline's curves: per data setting, PT, SPoT and MPT on the same axes for each target
task's dev metric and for the smoothed training loss; the source stages' loss below."""

import json
import struct

from etils import epath
import matplotlib.pyplot as plt
import pytest

from mpt_jax.pipeline import curves
from mpt_jax.pipeline.run_dirs import AdaptRun
from mpt_jax.pipeline.run_dirs import Setting
from mpt_jax.runtime.model_dir import ModelDir
from tasks import registry

TASK = "curves_test_task"  # primary metric: accuracy


def _run(directory, losses=None, evals=None) -> ModelDir:
  """A MODEL_DIR whose train.jsonl logs `losses` {step: loss} and eval.jsonl `evals`
  {step: {task/metric: value}} (nothing if None)."""
  run = ModelDir(directory)
  run.path.mkdir(parents=True, exist_ok=True)
  for name, logged in (("train", losses), ("eval", evals)):
    if logged is not None:
      rows = [json.dumps({"step": step, **(values if name == "eval" else
                                           {"loss": values, "learning_rate": 0.3})})
              for step, values in logged.items()]
      (run.path / f"{name}.jsonl").write_text("\n".join(rows) + "\n\n")
  return run


@pytest.fixture(scope="module", autouse=True)
def primary_metric():
  registry.register_primary_metric(TASK, "accuracy")


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


def test_smoothing_starts_at_the_first_value_and_keeps_a_constant():
  assert curves.smoothed([4.0, 4.0, 4.0]) == pytest.approx([4.0, 4.0, 4.0])
  got = curves.smoothed([1.0, 0.0])
  assert got[0] == pytest.approx(1.0)
  assert got[1] == pytest.approx(0.6 * 0.4 / (1 - 0.36))  # debiased like TensorBoard


def test_dev_metric_is_the_tasks_primary_metric_also_under_its_k_shot_name(tmp_path):
  run = _run(tmp_path / "run", evals={
      0: {f"{TASK}_k4_s0/f1": 1.0, f"{TASK}_k4_s0/accuracy": 50.0, "average": 25.5},
      10: {f"{TASK}_k4_s0/f1": 2.0, f"{TASK}_k4_s0/accuracy": 75.0, "average": 38.5}})
  assert curves.dev_metric(run, TASK) == ("accuracy", ([0, 10], [50.0, 75.0]))
  assert curves.dev_metric(run, "another_task") is None
  assert curves.dev_metric(_run(tmp_path / "not_evaluated"), TASK) is None


def test_methods_share_the_axes_of_each_target_task_and_setting(tmp_path, figures):
  full, k4 = Setting(), Setting(4, 0)
  def evals(*values):
    return {step: {f"{TASK}/accuracy": v, f"{TASK}/f1": 0.0} for step, v in
            zip((0, 50, 100), values)}
  adapt = [(AdaptRun(method, setting, seed), _run(tmp_path / f"{method}{setting.name}{seed}",
                                                  {50: 2.0, 100: 1.0}, evals(*scores)))
           for method, setting, seed, scores in (
               ("prompt_tuning", full, 0, (10, 20, 30)), ("spot", full, 0, (40, 50, 60)),
               ("mpt", full, 0, (45, 70, 80)), ("mpt", full, 1, (50, 75, 85)),
               ("mpt", k4, 0, (45, 55, 65)))]
  sources = {"teachers": _run(tmp_path / "t", {10: 3.0, 20: 2.0}),
             "distill": _run(tmp_path / "d")}
  path = curves.plot_curves(epath.Path(tmp_path) / "curves.png", [TASK], adapt, sources)
  assert _png_size(path) == (800, 900)  # 2 columns x 3 rows of 4 x 3 in at 100 dpi
  (_, axes), = figures
  metric = axes[0, 0]
  assert metric.get_title() == f"{TASK} (full)" and metric.get_ylabel() == "dev accuracy"
  lines = metric.get_lines()
  # One line per method: a lone run as it is, several as their mean, with a band.
  assert [line.get_label() for line in lines] == ["prompt_tuning", "spot", "mpt (mean of 2)"]
  assert [list(line.get_ydata()) for line in lines] == [[10, 20, 30], [40, 50, 60],
                                                        [47.5, 72.5, 82.5]]
  assert all(list(line.get_xdata()) == [0, 50, 100] for line in lines)
  assert len({line.get_color() for line in lines}) == 3
  band, = metric.collections  # mpt's two seeds, ± one standard deviation
  low, high = band.get_paths()[0].vertices[:, 1].min(), band.get_paths()[0].vertices[:, 1].max()
  assert (low, high) == pytest.approx((47.5 - 3.5355, 82.5 + 3.5355), abs=1e-3)
  assert [t.get_text() for t in metric.get_legend().get_texts()] == [
      "prompt_tuning", "spot", "mpt (mean of 2)"]
  assert metric.get_xlim()[0] == 0
  loss = axes[0, 1]
  assert loss.get_title() == "training loss (full)"
  assert list(loss.get_lines()[0].get_ydata()) == pytest.approx(curves.smoothed([2.0, 1.0]))
  assert axes[1, 0].get_title() == f"{TASK} (k=4)"
  assert [line.get_label() for line in axes[1, 0].get_lines()] == ["mpt"]
  assert not axes[1, 0].collections  # one run: no band
  assert axes[2, 0].get_title() == "teachers: training loss"
  assert not axes[2, 1].axison  # distill has not logged yet
