"""The pipeline command's checks before any stage starts: unknown methods and unknown
task mixtures are refused, with the valid choices, and nothing is created or launched."""

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

