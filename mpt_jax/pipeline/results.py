"""The pipeline's results table: methods by target tasks, as Markdown, CSV and JSON.

One row per method and data setting ('full', or 'k=16' with every few-shot draw
pooled), one column per target task and the average; each cell is mean ± std over
seeds (and draws) of the task's primary metric on the test split (the paper's
protocol: the prompt is chosen on dev, reported on test). For the paper's own
tasks a row of the paper's MPT figures (T5-Base) stands beside ours.
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


def task_score(task: str, metrics: Mapping[str, float]) -> float:
  """The task's primary metric (the paper's), else the mean of what it reports."""
  metric = registry.primary_metric(task)
  if metric is not None and metric in metrics:
    return float(metrics[metric])
  return float(np.mean(list(metrics.values())))


def _run_scores(run_dir: ModelDir) -> dict[str, float]:
  """{parent task: score} of a run on its test split (dev if it has no test)."""
  summary = json.loads(run_dir.eval_results.read_text())["results"]
  split = "test" if "test" in summary else next(iter(summary))
  # A k-shot task is scored by its parent's primary metric: only the stage processes
  # register the k-shot variants.
  scores = {}
  for task, metrics in summary[split].items():
    parent = few_shot.parent_name(task)
    scores[parent] = task_score(parent, metrics)
  return scores


def collect(root: PipelineDir, runs: Sequence[AdaptRun], targets: Sequence[str]) -> dict:
  """The table as a dict: columns, then one row per (method, setting) with each cell's
  mean, std and the values behind it."""
  columns = sorted({few_shot.parent_name(t) for t in targets})
  grouped = collections.defaultdict(list)
  for run in runs:
    scores = _run_scores(root.adapt(run))
    scores[AVERAGE] = float(np.mean([scores[c] for c in columns]))
    grouped[(run.method, run.setting.group)].append(scores)
  rows = []
  for (method, setting), scored in grouped.items():
    cells = {}
    for column in [*columns, AVERAGE]:
      values = [s[column] for s in scored]
      cells[column] = {"mean": float(np.mean(values)),
                       "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                       "values": values}
    rows.append({"method": method, "setting": setting, "n": len(scored), "cells": cells})
  paper = {c: PAPER_MPT[c] for c in columns if c in PAPER_MPT}
  return {"metric_split": "test", "columns": [*columns, AVERAGE], "rows": rows,
          "paper_mpt_t5_base": paper}


def write(root: PipelineDir, table: dict) -> None:
  """results.json, results.csv and results.md in ROOT_DIR."""
  root.results("json").write_text(json.dumps(table, indent=2))
  columns = table["columns"]
  text = io.StringIO()
  out = csv.writer(text, lineterminator="\n")
  out.writerow(["method", "setting", "n"] + [f"{c}{s}" for c in columns for s in ("", "_std")])
  for row in table["rows"]:
    out.writerow([row["method"], row["setting"], row["n"]] + [
        f"{row['cells'][c][k]:.2f}" for c in columns for k in ("mean", "std")])
  root.results("csv").write_text(text.getvalue())
  lines = ["| method | setting | n | " + " | ".join(columns) + " |",
           "|---|---|---|" + "---|" * len(columns)]
  for row in table["rows"]:
    cells = [f"{row['cells'][c]['mean']:.1f} ± {row['cells'][c]['std']:.1f}" for c in columns]
    lines.append(f"| {row['method']} | {row['setting']} | {row['n']} | "
                 + " | ".join(cells) + " |")
  paper = table["paper_mpt_t5_base"]
  if paper:
    cells = [f"{paper[c]:.1f}" if c in paper else "–" for c in columns]
    lines.append("| MPT (paper, T5-Base) | full | – | " + " | ".join(cells) + " |")
  note = (f"\nScores: each task's primary metric on the {table['metric_split']} split, "
          "mean ± std over seeds and few-shot draws (n runs).\n")
  root.results("md").write_text("\n".join(lines) + "\n" + note)
