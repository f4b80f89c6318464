"""The pipeline command (and launch/local.sh, which starts it): an interrupted stage
resumes, finished stages are skipped, and the results files have the documented columns."""

import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from tests import runtime_fixtures as rf

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _command(root_dir, backbone):
  return [sys.executable, "-m", "mpt_jax.pipeline", "--gin_file=tests/toy_pipeline.gin",
          f"--gin.ROOT_DIR='{root_dir}'", f"--gin.BACKBONE_DIR='{backbone}'"]


def _local_sh(root_dir, backbone):
  """The same run through launch/local.sh, as a user starts the pipeline."""
  return [str(ROOT / "launch" / "local.sh"), "--venv", sys.prefix,
          "--pipeline", "tests/toy_pipeline.gin", "--model-dir", str(root_dir), "--",
          f"--gin.BACKBONE_DIR='{backbone}'"]


def _steps(model_dir):
  path = model_dir / "train.jsonl"
  if not path.exists():
    return []
  return [json.loads(line)["step"] for line in path.read_text().splitlines() if line]


@pytest.mark.xdist_group("subprocesses")
def test_pipeline_resumes_skips_and_writes_results(tmp_path):
  backbone = rf.write_tiny_backbone(tmp_path / "backbone")
  root = tmp_path / "root"
  first = subprocess.Popen(_command(root, backbone), cwd=ROOT, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while max(_steps(root / "teachers"), default=0) < 15 and time.time() < deadline:
    assert first.poll() is None, "the pipeline ended before it could be interrupted"
    time.sleep(0.05)
  os.killpg(first.pid, signal.SIGKILL)  # the pipeline and its running stage
  first.wait()
  assert not (root / "teachers" / "prompts.safetensors").exists()

  second = subprocess.run(_local_sh(root, backbone), cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
  assert second.returncode == 0, second.stderr[-3000:]
  assert f"[run] {sys.prefix}/bin/python -m mpt_jax.pipeline" in second.stderr
  assert "Resuming" in second.stderr
  steps = _steps(root / "teachers")
  assert steps.count(1) == 1 and steps[-1] == 60  # continued, never restarted

  columns = next(csv.reader(open(root / "results.csv")))
  assert columns == ["method", "setting", "n", "toy_first", "toy_first_std", "toy_vowel",
                     "toy_vowel_std", "average", "average_std"]
  table = json.loads((root / "results.json").read_text())
  assert {(r["method"], r["setting"]) for r in table["rows"]} == {
      ("prompt_tuning", "full"), ("mpt", "full"), ("prompt_tuning", "k=4"), ("mpt", "k=4")}
  markdown = (root / "results.md").read_text()
  assert markdown.startswith("| method | setting | n | toy_first | toy_vowel | average |")
  assert markdown in second.stdout  # local.sh prints the table
  assert (root / "curves.png").stat().st_size > 1000
  assert (root / "adapt/mpt/k4_d0/seed0/eval/results.json").is_file()

  third = subprocess.run(_command(root, backbone), cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
  assert third.returncode == 0, third.stderr[-3000:]
  assert "starting" not in third.stderr
  for stage in ("teachers", "distill", "prompt_tuning full seed 0", "mpt k4_d0 seed 0"):
    assert f"[{stage}] already complete" in third.stderr
  assert "| method | setting |" in third.stdout
