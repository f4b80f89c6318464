"""`python -m mpt_jax.train` as a user runs it: resume after SIGKILL, and flag errors."""

import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mpt_jax
from tests import runtime_fixtures as rf

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _command(model_dir, backbone, *extra):
  return [sys.executable, "-m", "mpt_jax.train", "--gin_file=tests/toy.gin",
          f"--gin.MODEL_DIR='{model_dir}'", f"--gin.BACKBONE='{backbone}'", *extra]


def _last_step(model_dir):
  path = pathlib.Path(model_dir) / "train.jsonl"
  if not path.exists():
    return 0
  lines = path.read_text().splitlines()
  return json.loads(lines[-1])["step"] if lines else 0


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
  return rf.write_tiny_backbone(tmp_path_factory.mktemp("backbone") / "tiny")


@pytest.mark.xdist_group("subprocesses")
def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path, backbone_dir):
  model_dir = tmp_path / "killed"
  process = subprocess.Popen(_command(model_dir, backbone_dir), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while _last_step(model_dir) < 25 and process.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert process.returncode == -signal.SIGKILL
  killed_at = _last_step(model_dir)
  assert 25 <= killed_at < 200 and not (model_dir / "prompts.safetensors").exists()

  rerun = subprocess.run(_command(model_dir, backbone_dir), cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "Resuming" in rerun.stderr
  uninterrupted = rf.train_toy(tmp_path / "straight", backbone_dir, train_steps=200)
  resumed = mpt_jax.load_prompts(model_dir / "prompts.safetensors")
  np.testing.assert_allclose(resumed.merged(), uninterrupted.prompts.merged(), rtol=1e-6,
                             atol=1e-7)


@pytest.mark.xdist_group("subprocesses")
def test_cli_errors_name_the_problem(tmp_path, backbone_dir):
  typo = subprocess.run(_command(tmp_path / "a", backbone_dir, "--gin.train.trian_steps=3"),
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert typo.returncode != 0 and "trian_steps" in typo.stderr
  missing = subprocess.run(_command(tmp_path / "b", tmp_path / "missing"), cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
  assert missing.returncode != 0
  assert "Backbone path" in missing.stderr and "does not exist" in missing.stderr
  helped = subprocess.run([sys.executable, "-m", "mpt_jax.train", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  assert "--gin_file" in helped.stdout and "--coordinator_address" in helped.stdout


def test_the_pipeline_forwards_data_and_multi_host_flags_to_its_stages():
  from mpt_jax import cli  # pylint: disable=g-import-not-at-top
  saved = {name: cli.FLAGS[name].value for name in ("tfds_data_dir", "multi_host",
                                                    "gin_search_paths", "process_count")}
  try:
    cli.FLAGS(["prog", "--tfds_data_dir=gs://bucket/tfds", "--multi_host",
               "--gin_search_paths=/a,/b"])
    assert cli.forwarded_flags() == ["--gin_search_paths=/a,/b",
                                     "--tfds_data_dir=gs://bucket/tfds", "--multi_host"]
  finally:
    for name, value in saved.items():
      cli.FLAGS[name].value = value
