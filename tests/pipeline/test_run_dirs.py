"""The pipeline's ROOT_DIR layout: data settings' names, groups and order, and where each
stage's runs, the results and the curves live."""

import os

from mpt_jax.pipeline import run_dirs
from mpt_jax.runtime.model_dir import ModelDir


def test_full_data_is_named_and_grouped_full():
  setting = run_dirs.Setting()
  assert (setting.name, setting.group) == ("full", "full")


def test_a_few_shot_draw_is_named_by_k_and_draw_and_grouped_by_k_alone():
  assert (run_dirs.Setting(16, 3).name, run_dirs.Setting(16, 3).group) == ("k16_d3", "k=16")
  assert run_dirs.Setting(16, 0).group == run_dirs.Setting(16, 3).group
  assert run_dirs.Setting(4, 0).name == "k4_d0"


def test_settings_are_full_data_then_every_draw_of_each_k_in_order():
  names = [s.name for s in run_dirs.settings((4, 16), few_shot_draws=2)]
  assert names == ["full", "k4_d0", "k4_d1", "k16_d0", "k16_d1"]
  assert run_dirs.settings() == [run_dirs.Setting()]
  assert [s.name for s in run_dirs.settings((32,))] == ["full", "k32_d0"]


def test_stage_runs_are_model_dirs_at_their_documented_places(tmp_path):
  root = run_dirs.PipelineDir(tmp_path)
  assert isinstance(root.teachers, ModelDir) and isinstance(root.distill, ModelDir)
  assert os.fspath(root.teachers.path) == str(tmp_path / "teachers")
  assert os.fspath(root.distill.path) == str(tmp_path / "distill")
  run = run_dirs.AdaptRun("mpt", run_dirs.Setting(16, 2), seed=5)
  adapt = root.adapt(run)
  assert isinstance(adapt, ModelDir)
  assert os.fspath(adapt.path) == str(tmp_path / "adapt" / "mpt" / "k16_d2" / "seed5")
  assert os.fspath(adapt.eval_results) == str(
      tmp_path / "adapt" / "mpt" / "k16_d2" / "seed5" / "eval" / "results.json")
  full = root.adapt(run_dirs.AdaptRun("spot", run_dirs.Setting(), seed=0))
  assert os.fspath(full.path) == str(tmp_path / "adapt" / "spot" / "full" / "seed0")


def test_backbone_results_curves_and_cache_sit_in_the_root(tmp_path):
  root = run_dirs.PipelineDir(tmp_path)
  assert os.fspath(root.backbone) == str(tmp_path / "backbone")
  assert [os.fspath(root.results(s)) for s in ("md", "csv", "json")] == [
      str(tmp_path / "results.md"), str(tmp_path / "results.csv"),
      str(tmp_path / "results.json")]
  assert os.fspath(root.curves) == str(tmp_path / "curves.png")
  assert os.fspath(root.compilation_cache) == str(tmp_path / ".jax_cache")


def test_a_relative_root_is_made_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  root = run_dirs.PipelineDir("out")
  assert os.fspath(root.root) == str(tmp_path / "out")
  assert os.fspath(root.teachers.path) == str(tmp_path / "out" / "teachers")
