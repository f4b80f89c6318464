"""The pipeline's results table: methods by target tasks, as Markdown, CSV and JSON.

One row per method and data setting ('full', or 'k=16' with every few-shot draw
pooled), one column per target task (headed by the metric it reports) and the
average; each cell is the task's primary metric on the test split (the paper's
protocol: the prompt is chosen on dev, reported on test), as mean ± std over seeds
(and draws) when a row has several runs. For the paper's own tasks a row of the
paper's MPT figures (T5-Base) stands beside ours.
"""

import collections
import csv
import io
import json
from typing import Mapping, Sequence

import numpy as np

from mpt_jax.pipeline.run_dirs import AdaptRun
from mpt_jax.pipeline.run_dirs import PipelineDir
from mpt_jax.runtime.model_dir import ModelDir
from tasks import few_shot
from tasks import registry

# MPT's per-task test figures with T5-Base (Tables 1, 2 of the paper).
PAPER_MPT = {
    "mpt_glue_mnli": 85.9, "mpt_glue_qqp": 90.3, "mpt_glue_qnli": 93.1,
    "mpt_glue_sst2": 93.8, "mpt_glue_stsb": 90.4, "mpt_glue_mrpc": 89.1,
    "mpt_glue_rte": 79.4, "mpt_glue_cola": 62.4, "mpt_superglue_multirc": 74.8,
    "mpt_superglue_boolq": 79.6, "mpt_superglue_wic": 69.0, "mpt_superglue_wsc": 67.3,
    "mpt_superglue_cb": 79.8, "mpt_mrqa_nq": 72.0, "mpt_mrqa_hotpotqa": 75.8,
    "mpt_mrqa_searchqa": 77.2, "mpt_mrqa_newsqa": 63.7, "mpt_winogrande": 56.5,
    "mpt_yelp": 96.4, "mpt_scitail": 95.5, "mpt_paws": 93.5,
}
AVERAGE = "average"


MEAN_OF_METRICS = "mean of its metrics"


def reported_metric(task: str, metrics: Sequence[str]) -> str:
  """The metric a task's column reports: its primary metric (the paper's) where it has
  one among `metrics`, else its only metric, else the mean of them all."""
  metric = registry.primary_metric(task)
  if metric in metrics:
    return metric
  return metrics[0] if len(metrics) == 1 else MEAN_OF_METRICS


def task_score(task: str, metrics: Mapping[str, float]) -> float:
  metric = reported_metric(task, list(metrics))
  if metric == MEAN_OF_METRICS:
    return float(np.mean(list(metrics.values())))
  return float(metrics[metric])


def _run_results(run_dir: ModelDir) -> dict[str, dict[str, float]]:
  """{parent task: {metric: value}} of a run on its test split (dev if it has no test).
  A k-shot task counts as its parent: only the stage processes register the variants."""
  summary = json.loads(run_dir.eval_results.read_text())["results"]
  split = "test" if "test" in summary else next(iter(summary))
  return {few_shot.parent_name(task): metrics for task, metrics in summary[split].items()}


def collect(root: PipelineDir, runs: Sequence[AdaptRun], targets: Sequence[str]) -> dict:
  """The table as a dict: columns, then one row per (method, setting) with each cell's
  mean, std and the values behind it."""
  columns = sorted({few_shot.parent_name(t) for t in targets})
  grouped = collections.defaultdict(list)
  reported = {}
  for run in runs:
    results = _run_results(root.adapt(run))
    scores = {task: task_score(task, metrics) for task, metrics in results.items()}
    scores[AVERAGE] = float(np.mean([scores[c] for c in columns]))
    grouped[(run.method, run.setting.group)].append(scores)
    reported.update({c: reported_metric(c, list(results[c])) for c in columns})
  rows = []
  for (method, setting), scored in grouped.items():
    cells = {}
    for column in [*columns, AVERAGE]:
      values = [s[column] for s in scored]
      cells[column] = {"mean": float(np.mean(values)),
                       # one run has no spread to report
                       "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                       "values": values}
    rows.append({"method": method, "setting": setting, "n": len(scored), "cells": cells})
  paper = {c: PAPER_MPT[c] for c in columns if c in PAPER_MPT}
  return {"metric_split": "test", "columns": [*columns, AVERAGE], "metrics": reported,
          "rows": rows, "paper_mpt_t5_base": paper}


def _cell(cell: Mapping) -> str:
  """A single run's score alone: a std of 0.0 would claim a spread nobody measured."""
  if cell["std"] is None:
    return f"{cell['mean']:.1f}"
  return f"{cell['mean']:.1f} ± {cell['std']:.1f}"


def write(root: PipelineDir, table: dict) -> None:
  """results.json, results.csv and results.md in ROOT_DIR."""
  root.results("json").write_text(json.dumps(table, indent=2))
  columns = table["columns"]
  text = io.StringIO()
  out = csv.writer(text, lineterminator="\n")
  out.writerow(["method", "setting", "n"] + [f"{c}{s}" for c in columns for s in ("", "_std")])
  for row in table["rows"]:
    out.writerow([row["method"], row["setting"], row["n"]] + [
        "" if row["cells"][c][k] is None else f"{row['cells'][c][k]:.2f}"
        for c in columns for k in ("mean", "std")])
  root.results("csv").write_text(text.getvalue())
  headers = [f"{c} ({table['metrics'][c]})" if c in table["metrics"] else c for c in columns]
  lines = ["| method | setting | n | " + " | ".join(headers) + " |",
           "|---|---|---|" + "---|" * len(columns)]
  for row in table["rows"]:
    cells = [_cell(row["cells"][c]) for c in columns]
    lines.append(f"| {row['method']} | {row['setting']} | {row['n']} | "
                 + " | ".join(cells) + " |")
  paper = table["paper_mpt_t5_base"]
  if paper:
    cells = [f"{paper[c]:.1f}" if c in paper else "–" for c in columns]
    lines.append("| MPT (paper, T5-Base) | full | – | " + " | ".join(cells) + " |")
  note = (f"\nScores: each task's metric (in its header) on the {table['metric_split']} "
          "split; with n > 1 runs (seeds and few-shot draws) the mean ± std over them.\n")
  root.results("md").write_text("\n".join(lines) + "\n" + note)
