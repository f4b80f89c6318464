"""Sweeps: a grid or a list of runs becomes the runs of one job, named by their settings,
and the job's summary ranks them."""

import json
import re

import pytest

from mpt_jax.runtime import sweeps


def test_a_grid_is_every_combination_named_by_its_settings():
  variants = sweeps.grid_variants({"make_optimizer.learning_rate": [0.1, 0.3],
                                   "SEED": [0, 1, 2]})
  assert [v.name for v in variants] == [
      "learning_rate=0.1,SEED=0", "learning_rate=0.1,SEED=1", "learning_rate=0.1,SEED=2",
      "learning_rate=0.3,SEED=0", "learning_rate=0.3,SEED=1", "learning_rate=0.3,SEED=2"]
  assert variants[4].bindings == ("make_optimizer.learning_rate = 0.3", "SEED = 1")
  assert variants[4].gin_files == ()


def test_names_keep_the_whole_key_when_short_names_would_clash_and_never_make_folders():
  variants = sweeps.grid_variants({"prompt_bank.length": [4], "single_prompt.length": [8],
                                   "prompt_bank.init_prompts": ["/p/q.safetensors"]})
  assert [v.name for v in variants] == [
      "prompt_bank.length=4,single_prompt.length=8,"
      "prompt_bank.init_prompts=_p_q.safetensors"]
  assert variants[0].bindings[2] == "prompt_bank.init_prompts = '/p/q.safetensors'"


def test_listed_runs_are_swept_over_the_grid():
  plan = sweeps.sweep(grid={"SEED": [0, 1]}, runs=[
      {"name": "pt", "gin_files": ["runs/prompt_tuning.gin"], "bindings": ["A = 1"]},
      {"name": "spot", "gin_files": ["runs/spot.gin"]}], model_dir="/home")
  assert [(v.name, v.gin_files, v.bindings) for v in plan.variants] == [
      ("pt,SEED=0", ("runs/prompt_tuning.gin",), ("A = 1", "SEED = 0")),
      ("pt,SEED=1", ("runs/prompt_tuning.gin",), ("A = 1", "SEED = 1")),
      ("spot,SEED=0", ("runs/spot.gin",), ("SEED = 0",)),
      ("spot,SEED=1", ("runs/spot.gin",), ("SEED = 1",))]
  assert plan.model_dir == "/home"
  assert sweeps.sweep().variants == []  # nothing bound: train runs alone


@pytest.mark.parametrize("grid,runs,message", [
    ({"SEED": []}, None, "sweep.grid['SEED'] must be a non-empty list of values, got []"),
    ({"SEED": "012"}, None, "sweep.grid['SEED'] must be a non-empty list of values"),
    (None, [{"gin_files": []}], "Each of sweep.runs is {'name': ..., 'gin_files'"),
    (None, [{"name": "a", "binding": []}], "Each of sweep.runs is"),
    (None, [{"name": "a"}, {"name": "a"}], "need different names; ['a'] repeat"),
])
def test_malformed_sweeps_are_refused_with_the_form_they_take(grid, runs, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    sweeps.sweep(grid=grid, runs=runs)
  with pytest.raises(ValueError, match=re.escape("sweep.max_runs_per_bank is 0; it must be")):
    sweeps.sweep(grid={"SEED": [0]}, max_runs_per_bank=0)


def _run(directory, *, loss, best=None, finished=True, failed=False):
  directory.mkdir(parents=True)
  (directory / "train.jsonl").write_text(json.dumps({"step": 8, "loss": loss}) + "\n")
  if best is not None:
    (directory / "best.json").write_text(json.dumps(
        {"step": 4, "metric": "average", "value": best, "results": {}}))
  if finished:
    (directory / "prompts.safetensors").write_bytes(b"")
  if failed:
    (directory / "failed.json").write_text("{}")
  return str(directory)


def test_the_summary_ranks_finished_runs_by_best_dev_metric_then_loss_failed_last(tmp_path):
  variants = [sweeps.Variant(name) for name in ("low", "failed", "high", "loss", "running")]
  dirs = [_run(tmp_path / "low", loss=1.0, best=40.0),
          _run(tmp_path / "failed", loss=9.0, best=90.0, finished=False, failed=True),
          _run(tmp_path / "high", loss=2.0, best=70.0),
          _run(tmp_path / "loss", loss=0.5),
          _run(tmp_path / "running", loss=3.0, best=99.0, finished=False)]
  text = sweeps.write_summary(tmp_path, variants, dirs)
  ranked = json.loads((tmp_path / "summary.json").read_text())
  assert [(r["name"], r["status"]) for r in ranked] == [
      ("high", "finished"), ("low", "finished"), ("loss", "finished"),
      ("running", "unfinished"), ("failed", "failed")]
  assert text.splitlines()[0] == ("| rank | run | best dev average (step) | "
                                  "last loss (step) | status |")
  assert "| 1 | high | 70.00 (4) | 2.0000 (8) | finished |" in text
  assert "| 3 | loss | – | 0.5000 (8) | finished |" in text
  assert (tmp_path / "summary.md").read_text() == text
