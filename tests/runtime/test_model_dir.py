"""MODEL_DIR's layout and resolve_prompts: best, else final, prompts; files; missing paths."""

import os
import pathlib
import re

import pytest

from mpt_jax.runtime import model_dir


def _touch(path: pathlib.Path) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(b"prompts")
  return path


def _local(paths):
  return tuple(pathlib.Path(os.fspath(p)) for p in paths)


def test_the_layout_names_every_file_a_run_writes(tmp_path):
  run = model_dir.ModelDir(tmp_path)
  assert str(run) == str(tmp_path)
  layout = {"config.gin": run.config_gin, "tasks.json": run.tasks_json,
            "checkpoints": run.checkpoints, "prompts/step_30.safetensors": run.step_prompts(30),
            "prompts.safetensors": run.final_prompts,
            "best/prompts.safetensors": run.best_prompts, "best.json": run.best_json,
            "eval/results.json": run.eval_results}
  for relative, path in layout.items():
    assert _local([path]) == (tmp_path / relative,), relative


def test_a_run_that_kept_a_best_prompt_resolves_to_it(tmp_path):
  best = _touch(tmp_path / "best" / "prompts.safetensors")
  _touch(tmp_path / "prompts.safetensors")
  assert _local(model_dir.resolve_prompts(tmp_path)) == (
      best, tmp_path / "eval" / "results.json")


def test_a_run_without_a_best_prompt_resolves_to_its_final_prompt(tmp_path):
  final = _touch(tmp_path / "prompts.safetensors")
  (tmp_path / "best").mkdir()  # a best/ folder without its file does not count
  assert _local(model_dir.resolve_prompts(tmp_path)) == (
      final, tmp_path / "eval" / "results.json")


def test_a_prompt_file_resolves_to_itself_with_results_beside_it(tmp_path):
  path = _touch(tmp_path / "exported" / "mine.npz")
  assert _local(model_dir.resolve_prompts(path)) == (
      path, tmp_path / "exported" / "eval" / "results.json")


def test_a_peft_adapter_directory_resolves_to_itself_with_results_beside_it(tmp_path):
  adapter = tmp_path / "adapters" / "mpt"
  _touch(adapter / "adapter_config.json")
  _touch(adapter / "adapter_model.safetensors")
  assert _local(model_dir.resolve_prompts(adapter)) == (
      adapter, tmp_path / "adapters" / "eval" / "results.json")


def test_a_relative_path_resolves_to_an_absolute_one(tmp_path, monkeypatch):
  _touch(tmp_path / "run" / "prompts.safetensors")
  monkeypatch.chdir(tmp_path)
  prompts, results = model_dir.resolve_prompts("run")
  assert os.path.isabs(os.fspath(prompts)) and os.path.isabs(os.fspath(results))
  assert _local([prompts, results]) == (tmp_path / "run" / "prompts.safetensors",
                                        tmp_path / "run" / "eval" / "results.json")


def test_a_missing_path_is_a_file_not_found_error_naming_it(tmp_path):
  missing = tmp_path / "no_such_run"
  with pytest.raises(FileNotFoundError, match=re.escape(
      f"Prompts {missing} do not exist: pass a prompt file, a PEFT adapter directory or a "
      "run's MODEL_DIR.")):
    model_dir.resolve_prompts(missing)


def test_an_unfinished_run_without_a_prompt_is_named_as_such(tmp_path):
  run = model_dir.ModelDir(tmp_path / "run")
  run.path.mkdir()
  run.tasks_json.write_text("{}")
  with pytest.raises(FileNotFoundError, match=r"run .* has no prompt yet"):
    model_dir.resolve_prompts(run.path)
