"""The pipeline command's checks before any stage starts (unknown methods and task
mixtures are refused, with the valid choices, and nothing is created or launched), and
the stage commands it builds, recorded instead of run."""

import re
import subprocess

import pytest

from mpt_jax import cli
from mpt_jax.pipeline import __main__ as pipeline_main
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


def test_every_stage_gets_its_own_extra_bindings(tmp_path, monkeypatch):
  commands = {}

  def record(launcher, name, command, done):
    del launcher
    commands[name] = list(command)
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text("{}")
    return True
  monkeypatch.setattr(pipeline_main.StageLauncher, "run", record)
  extra = {stage: [f"X_{stage.upper()} = 1"]
           for stage in ("teachers", "distill", "prompt_tuning", "mpt", "few_shot", "eval")}
  _run(tmp_path / "root", methods=("prompt_tuning", "mpt"), few_shot_ks=(4,),
       stage_bindings=extra, write_results=False)
  stages = {"teachers": "teachers", "distill": "distill",
            "prompt_tuning full seed 0": "prompt_tuning", "mpt full seed 0": "mpt",
            "evaluate": "eval"}
  for name, own in stages.items():
    got = {b for b in extra for flag in commands[name]
           if flag == f"--gin_bindings={extra[b][0]}"}
    assert got == {own}, (name, got)
  few_shot = commands["mpt k4_d0 seed 0"]
  assert "--gin_bindings=X_MPT = 1" in few_shot and "--gin_bindings=X_FEW_SHOT = 1" in few_shot
  assert "--gin_bindings=X_PROMPT_TUNING = 1" not in few_shot
