"""The README's Python API snippet and its sweep command run as written."""

import os
import re
import shlex
import subprocess
import sys

import pytest

import mpt_jax
from tests import helpers

ROOT = helpers.ROOT


def test_the_api_snippet_runs(monkeypatch, capsys):
  readme = (ROOT / "README.md").read_text()
  section = readme[readme.index("## Python API"):]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  monkeypatch.chdir(ROOT)
  exec(compile(code, "README.md", "exec"), {})  # pylint: disable=exec-used
  printed = capsys.readouterr().out.splitlines()
  assert printed == ["gated-gelu 32", "decomposed ('task_0', 'task_1', 'task_2') 4", "2 str"]


def _readme_command(heading: str) -> list[str]:
  """The first shell command after `heading` in the README, as its words."""
  readme = (ROOT / "README.md").read_text()
  block = re.search(r"```sh\n(.*?)```", readme[readme.index(heading):], re.S).group(1)
  lines = [line.rstrip("\\") for line in block.splitlines() if not line.startswith("#")]
  return shlex.split(" ".join(lines))


@pytest.mark.xdist_group("subprocesses")
def test_the_sweep_command_trains_its_grid_as_one_bank_and_ranks_it(tmp_path):
  # The README's command as written, on a random backbone of the demo's vocabulary in
  # place of the demo's pretrained one, shortened by bindings parsed after its own.
  config = mpt_jax.named_config("t5_1_1_tiny", **{**helpers.TINY, "vocab_size": 1024})
  backbone = mpt_jax.random_backbone(config, seed=0).save(tmp_path / "backbone")
  command = [word.replace("output/cache/demo_backbone_spm", str(backbone))
             .replace("/tmp/mpt/sweep", str(tmp_path / "sweep"))
             for word in _readme_command("**A sweep from the command line**")]
  assert command[:3] == ["python", "-m", "mpt_jax.train"]
  done = subprocess.run(
      [sys.executable, *command[1:], "--gin.TRAIN_STEPS=2", "--gin.EVAL_PERIOD=2",
       "--gin.EvalConfig.num_examples=4"],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
      env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})  # a user's
  assert done.returncode == 0, done.stderr[-3000:]
  runs = [f"learning_rate={rate},SEED={seed}" for rate in (0.1, 0.3, 1.0) for seed in (0, 1, 2)]
  assert "Bank 1 of 1: 9 runs" in done.stderr
  for run in runs:
    assert (tmp_path / "sweep" / run / "prompts.safetensors").exists(), run
  summary = (tmp_path / "sweep" / "summary.md").read_text()
  assert all(f"| {run} |" in summary for run in runs)
  errors = re.findall(r"^(?:E\d{4} |ERROR).*", done.stderr, re.M)
  assert not errors, errors
