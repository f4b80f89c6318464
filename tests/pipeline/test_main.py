"""The pipeline command's checks before any stage starts (unknown methods and task
mixtures are refused, with the valid choices, and nothing is created or launched), and
the stage commands it builds, recorded instead of run."""

import ast
import re
import subprocess

import pytest

from mpt_jax import cli
from mpt_jax.pipeline import __main__ as pipeline_main
from mpt_jax.pipeline import run_dirs
from tests import toy_tasks  # pylint: disable=unused-import  (registers the toy mixtures)


@pytest.fixture(autouse=True)
def no_stage_processes(monkeypatch):
  """Fails the test if any stage process would start."""
  def refuse(*args, **kwargs):
    raise AssertionError(f"a stage process started: {args} {kwargs}")
  monkeypatch.setattr(subprocess, "run", refuse)


def _run(root, **overrides):
  arguments = dict(root_dir=str(root), source_mixture="toy_mix", target_mixture="toy_targets",
                   backbone="/nowhere/backbone")
  return pipeline_main.run_pipeline(**{**arguments, **overrides})


def test_unknown_methods_are_refused_with_the_methods_to_choose_from(tmp_path):
  root = tmp_path / "root"
  with pytest.raises(ValueError, match=re.escape(
      "Unknown methods ['adapter', 'lora']; choose from "
      "['mpt', 'mpt_multitarget', 'prompt_tuning', 'spot'].")):
    _run(root, methods=("mpt", "lora", "adapter"))
  assert not root.exists()


def test_an_unknown_target_mixture_fails_before_anything_starts_with_close_names(tmp_path):
  root = tmp_path / "root"
  with pytest.raises(ValueError, match=r"'toy_targetz'\. Close registered names: toy_targets"):
    _run(root, target_mixture="toy_targetz")
  assert not root.exists()


def test_an_unknown_source_mixture_fails_before_anything_starts_with_close_names(tmp_path):
  root = tmp_path / "root"
  with pytest.raises(ValueError, match=r"'toy_mixx'\. Close registered names: toy_mix"):
    _run(root, source_mixture="toy_mixx")
  assert not root.exists()


def test_every_method_names_a_gin_file_the_stages_find():
  assert set(pipeline_main.METHODS) == {"prompt_tuning", "spot", "mpt", "mpt_multitarget"}
  for gin_file in pipeline_main.METHODS.values():
    assert (cli.package_gin_dir() / gin_file).is_file(), gin_file


def _listed_runs(bank_gin) -> dict[str, dict]:
  """{run name: {'gin_files', 'bindings'}} of a bank's gin file (its `sweep.runs`)."""
  text = bank_gin.read_text()
  listed = ast.literal_eval(text[text.index("sweep.runs = ") + len("sweep.runs = "):])
  return {run["name"]: run for run in listed}


def test_every_stage_gets_its_own_extra_bindings(tmp_path, monkeypatch):
  commands = {}

  def record(launcher, name, command, done):
    del launcher
    commands[name] = list(command)
    for path in done:
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_text("{}")
    return True
  monkeypatch.setattr(pipeline_main.StageLauncher, "run", record)
  extra = {stage: [f"X_{stage.upper()} = 1"]
           for stage in ("teachers", "distill", "prompt_tuning", "mpt", "few_shot", "eval")}
  root = tmp_path / "root"
  _run(root, methods=("prompt_tuning", "mpt"), few_shot_ks=(4,), stage_bindings=extra,
       write_results=False)
  for name, own in {"teachers": "teachers", "distill": "distill",
                    "evaluate": "eval"}.items():
    got = {b for b in extra for flag in commands[name]
           if flag == f"--gin_bindings={extra[b][0]}"}
    assert got == {own}, (name, got)
  # Stage 3: one job per prompt, each run's settings in the job's gin file.
  assert sorted(commands) == sorted(["teachers", "distill", "evaluate",
                                     "prompt_bank: 2 runs", "mpt: 2 runs"])
  runs = {}
  for job in ("prompt_bank", "mpt"):
    gin_file = root / "adapt" / "banks" / job / "bank.gin"
    assert f"--gin_file={gin_file}" in commands[f"{job}: 2 runs"]
    assert "sweep.max_runs_per_bank = 32" in gin_file.read_text()
    runs.update(_listed_runs(gin_file))
  for name, own in {"prompt_tuning/full/seed0": {"prompt_tuning"},
                    "mpt/full/seed0": {"mpt"},
                    "mpt/k4_d0/seed0": {"mpt", "few_shot"}}.items():
    got = {b for b in extra if f"{extra[b][0]}" in runs[name]["bindings"]}
    assert got == own, (name, got)
  few_shot = runs["mpt/k4_d0/seed0"]
  assert few_shot["gin_files"] == ["runs/adapt.gin", "runs/few_shot.gin"]
  assert f"MODEL_DIR={str(root / 'adapt' / 'mpt' / 'k4_d0' / 'seed0')!r}" in \
      few_shot["bindings"]


def test_stage_3_is_a_job_per_prompt_whose_runs_train_in_banks():
  # The paper's protocol: 3 methods x 3 seeds x (full data + k in {4, 16, 32} x 10 draws).
  runs = [run_dirs.AdaptRun(method, setting, seed) for seed in (0, 1, 2)
          for setting in run_dirs.settings((4, 16, 32), 10)
          for method in ("prompt_tuning", "spot", "mpt")]
  assert len(runs) == 279
  jobs = pipeline_main.jobs(runs)
  assert {name: len(job) for name, job in jobs.items()} == {"prompt_bank": 186, "mpt": 93}
  assert sorted(jobs["prompt_bank"] + jobs["mpt"], key=str) == sorted(runs, key=str)
  assert {run.method for run in jobs["prompt_bank"]} == {"prompt_tuning", "spot"}


def test_a_bank_cap_below_one_is_refused(tmp_path):
  with pytest.raises(ValueError, match="max_runs_per_bank is 0; it must be >= 1"):
    _run(tmp_path / "root", max_runs_per_bank=0)
