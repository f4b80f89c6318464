"""The results table: scores read from each run's eval/results.json, pooled by method and
data setting (k-shot tasks under their parent), and written as Markdown, CSV and JSON."""

import json

import pytest

from mpt_jax.pipeline import results
from mpt_jax.pipeline.run_dirs import AdaptRun
from mpt_jax.pipeline.run_dirs import PipelineDir
from mpt_jax.pipeline.run_dirs import Setting
from tasks import registry

CLS = "results_test_cls"  # primary metric: accuracy
GEN = "results_test_gen"  # no primary metric: the mean of what it reports
RTE = "mpt_glue_rte"  # one of the paper's tasks (primary metric: accuracy)
FULL = Setting()


@pytest.fixture(scope="module", autouse=True)
def primary_metrics():
  registry.register_primary_metric(CLS, "accuracy")


def _write_run(root: PipelineDir, run: AdaptRun, tasks: dict, split: str = "test") -> None:
  """A run's eval/results.json as `mpt_jax.eval` writes it; `tasks` {name: metrics}."""
  path = root.adapt(run).eval_results
  path.parent.mkdir(parents=True, exist_ok=True)
  other = {name: {metric: -1.0 for metric in metrics} for name, metrics in tasks.items()}
  summary = {"validation": other, split: tasks} if split != "validation" else {split: tasks}
  path.write_text(json.dumps({"prompts": "p", "backbone": "b", "results": summary}))


def test_task_score_is_the_registered_primary_metric():
  assert results.task_score(CLS, {"f1": 10.0, "accuracy": 70.0}) == 70.0


def test_task_score_is_the_mean_without_a_primary_metric_or_when_it_is_not_reported():
  assert results.task_score(GEN, {"em": 40.0, "f1": 60.0}) == 50.0
  assert results.task_score(CLS, {"em": 20.0, "f1": 30.0}) == 25.0


def test_collect_pools_seeds_and_draws_per_method_and_setting(tmp_path):
  root = PipelineDir(tmp_path)
  runs = []

  def run(method, setting, seed, cls, gen, suffix=""):
    runs.append(AdaptRun(method, setting, seed))
    _write_run(root, runs[-1], {CLS + suffix: cls, GEN + suffix: gen})

  # In the pipeline's order: seeds, then settings, then methods.
  run("mpt", FULL, 0, {"accuracy": 70.0, "f1": 0.0}, {"em": 40.0, "f1": 60.0})
  run("prompt_tuning", FULL, 0, {"accuracy": 90.0, "f1": 0.0}, {"em": 10.0, "f1": 30.0})
  run("mpt", Setting(4, 0), 0, {"accuracy": 60.0}, {"em": 20.0, "f1": 40.0}, "_k4_s0")
  run("mpt", Setting(4, 1), 0, {"accuracy": 50.0}, {"em": 30.0, "f1": 50.0}, "_k4_s1")
  run("mpt", FULL, 1, {"accuracy": 80.0, "f1": 0.0}, {"em": 50.0, "f1": 70.0})
  run("mpt", FULL, 2, {"accuracy": 90.0, "f1": 0.0}, {"em": 60.0, "f1": 80.0})
  table = results.collect(root, runs, [GEN, CLS])

  assert table["columns"] == [CLS, GEN, "average"]
  assert table["metric_split"] == "test"
  assert table["paper_mpt_t5_base"] == {}
  rows = {(row["method"], row["setting"]): row for row in table["rows"]}
  assert list(rows) == [("mpt", "full"), ("prompt_tuning", "full"), ("mpt", "k=4")]
  full = rows[("mpt", "full")]
  assert full["n"] == 3
  assert full["cells"][CLS] == {"mean": 80.0, "std": pytest.approx(10.0), "values": [70, 80, 90]}
  assert full["cells"][GEN] == {"mean": 60.0, "std": pytest.approx(10.0), "values": [50, 60, 70]}
  assert full["cells"]["average"] == {"mean": 70.0, "std": pytest.approx(10.0),
                                      "values": [60.0, 70.0, 80.0]}
  few = rows[("mpt", "k=4")]
  assert few["n"] == 2
  assert few["cells"][CLS]["values"] == [60.0, 50.0]
  assert few["cells"][GEN]["values"] == [30.0, 40.0]
  assert few["cells"]["average"]["values"] == [45.0, 45.0]
  assert few["cells"]["average"]["std"] == 0.0
  single = rows[("prompt_tuning", "full")]
  assert single["n"] == 1
  assert single["cells"][CLS] == {"mean": 90.0, "std": None, "values": [90.0]}
  assert single["cells"]["average"]["mean"] == 55.0


def test_k_shot_scores_use_the_parents_primary_metric(tmp_path):
  # The pipeline process never registers the k-shot variants its stage processes drew,
  # so the primary metric must come from the parent task.
  root = PipelineDir(tmp_path)
  run = AdaptRun("mpt", Setting(16, 0), 0)
  _write_run(root, run, {f"{CLS}_k16_s0": {"accuracy": 70.0, "f1": 10.0},
                         f"{GEN}_k16_s0": {"em": 40.0, "f1": 60.0}})
  cells = results.collect(root, [run], [CLS, GEN])["rows"][0]["cells"]
  assert cells[GEN]["mean"] == 50.0
  assert cells[CLS]["mean"] == 70.0


def test_scores_come_from_the_test_split_else_the_only_split_evaluated(tmp_path):
  root = PipelineDir(tmp_path)
  tested, validated = AdaptRun("mpt", FULL, 0), AdaptRun("mpt", FULL, 1)
  _write_run(root, tested, {CLS: {"accuracy": 64.0}}, split="test")
  _write_run(root, validated, {CLS: {"accuracy": 36.0}}, split="validation")
  table = results.collect(root, [tested, validated], [CLS])
  assert table["rows"][0]["cells"][CLS]["values"] == [64.0, 36.0]


def test_the_papers_mpt_figures_stand_beside_the_papers_tasks_only(tmp_path):
  root = PipelineDir(tmp_path)
  run = AdaptRun("mpt", FULL, 0)
  _write_run(root, run, {RTE: {"accuracy": 75.0}, GEN: {"f1": 10.0}})
  table = results.collect(root, [run], [GEN, RTE])
  assert table["columns"] == [RTE, GEN, "average"]
  assert table["paper_mpt_t5_base"] == {RTE: 79.4}
  assert table["rows"][0]["cells"]["average"]["mean"] == 42.5


def test_write_produces_the_markdown_csv_and_json_tables(tmp_path):
  root = PipelineDir(tmp_path)
  runs = [AdaptRun("mpt", FULL, 0), AdaptRun("prompt_tuning", FULL, 0),
          AdaptRun("mpt", FULL, 1)]
  for run, score in zip(runs, (70.0, 60.5, 80.0)):
    _write_run(root, run, {RTE: {"accuracy": score}})
  table = results.collect(root, runs, [RTE])
  results.write(root, table)

  std = 7.0710678118654755
  assert json.loads(root.results("json").read_text()) == {
      "metric_split": "test", "columns": [RTE, "average"], "metrics": {RTE: "accuracy"},
      "paper_mpt_t5_base": {RTE: 79.4},
      "rows": [
          {"method": "mpt", "setting": "full", "n": 2, "cells": {
              RTE: {"mean": 75.0, "std": pytest.approx(std), "values": [70.0, 80.0]},
              "average": {"mean": 75.0, "std": pytest.approx(std), "values": [70.0, 80.0]}}},
          {"method": "prompt_tuning", "setting": "full", "n": 1, "cells": {
              RTE: {"mean": 60.5, "std": None, "values": [60.5]},
              "average": {"mean": 60.5, "std": None, "values": [60.5]}}}]}
  assert root.results("csv").read_text() == (
      "method,setting,n,mpt_glue_rte,mpt_glue_rte_std,average,average_std\n"
      "mpt,full,2,75.00,7.07,75.00,7.07\n"
      "prompt_tuning,full,1,60.50,,60.50,\n")
  assert root.results("md").read_text() == (
      "| method | setting | n | mpt_glue_rte (accuracy) | average |\n"
      "|---|---|---|---|---|\n"
      "| mpt | full | 2 | 75.0 ± 7.1 | 75.0 ± 7.1 |\n"
      "| prompt_tuning | full | 1 | 60.5 | 60.5 |\n"
      "| MPT (paper, T5-Base) | full | – | 79.4 | – |\n"
      "\n"
      "Scores: each task's metric (in its header) on the test split; with n > 1 runs "
      "(seeds and few-shot draws) the mean ± std over them.\n")


def test_the_markdown_has_no_paper_row_without_the_papers_tasks(tmp_path):
  root = PipelineDir(tmp_path)
  run = AdaptRun("spot", Setting(4, 0), 3)
  _write_run(root, run, {f"{CLS}_k4_s0": {"accuracy": 12.34}})
  results.write(root, results.collect(root, [run], [CLS]))
  lines = root.results("md").read_text().splitlines()
  assert lines[:3] == ["| method | setting | n | results_test_cls (accuracy) | average |",
                       "|---|---|---|---|---|",
                       "| spot | k=4 | 1 | 12.3 | 12.3 |"]
  assert lines[3] == ""
  assert root.results("csv").read_text().splitlines()[1] == "spot,k=4,1,12.34,,12.34,"


def test_a_column_without_a_primary_metric_says_it_reports_the_mean(tmp_path):
  root = PipelineDir(tmp_path)
  run = AdaptRun("mpt", FULL, 0)
  _write_run(root, run, {GEN: {"em": 40.0, "f1": 60.0}})
  results.write(root, results.collect(root, [run], [GEN]))
  assert root.results("md").read_text().splitlines()[0] == (
      f"| method | setting | n | {GEN} (mean of its metrics) | average |")
