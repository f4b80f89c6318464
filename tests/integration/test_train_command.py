"""`python -m mpt_jax.train` and `python -m mpt_jax.eval` as a user runs them: resume
after SIGKILL, flag errors, --help."""

import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mpt_jax
from tests import helpers

ROOT = helpers.ROOT


def _command(model_dir, backbone, *extra):
  return [sys.executable, "-m", "mpt_jax.train", "--gin_file=tests/toy.gin",
          f"--gin.MODEL_DIR='{model_dir}'", f"--gin.BACKBONE='{backbone}'", *extra]


def _last_step(model_dir):
  path = pathlib.Path(model_dir) / "train.jsonl"
  if not path.exists():
    return 0
  lines = path.read_text().splitlines()
  return json.loads(lines[-1])["step"] if lines else 0


@pytest.mark.xdist_group("subprocesses")
def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path, tiny_backbone_dir):
  model_dir = tmp_path / "killed"
  process = subprocess.Popen(_command(model_dir, tiny_backbone_dir), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while _last_step(model_dir) < 25 and process.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert process.returncode == -signal.SIGKILL
  killed_at = _last_step(model_dir)
  assert 25 <= killed_at < 200 and not (model_dir / "prompts.safetensors").exists()

  rerun = subprocess.run(_command(model_dir, tiny_backbone_dir), cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "Resuming" in rerun.stderr
  uninterrupted = helpers.train_toy(tmp_path / "straight", tiny_backbone_dir, train_steps=200)
  resumed = mpt_jax.load_prompts(model_dir / "prompts.safetensors")
  np.testing.assert_allclose(resumed.merged(), uninterrupted.prompts.merged(), rtol=1e-6,
                             atol=1e-7)


@pytest.mark.xdist_group("subprocesses")
def test_cli_errors_name_the_problem(tmp_path, tiny_backbone_dir):
  typo = subprocess.run(_command(tmp_path / "a", tiny_backbone_dir, "--gin.train.trian_steps=3"),
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert typo.returncode != 0 and "trian_steps" in typo.stderr
  missing = subprocess.run(_command(tmp_path / "b", tmp_path / "missing"), cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
  assert missing.returncode != 0
  assert "Backbone path" in missing.stderr and "does not exist" in missing.stderr


@pytest.mark.xdist_group("subprocesses")
@pytest.mark.parametrize("command", ["mpt_jax.train", "mpt_jax.eval", "mpt_jax.pipeline"])
def test_every_command_lists_the_shared_flags(command):
  helped = subprocess.run([sys.executable, "-m", command, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  for flag in ("--gin_file", "--gin_bindings", "--tfds_data_dir", "--sentencepiece_model",
               "--coordinator_address"):
    assert flag in helped.stdout, flag
