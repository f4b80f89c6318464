"""`python -m mpt_jax.infer --gin_file=runs/infer.gin` as a user runs it: stopped by
SIGTERM (exit 75) and killed by SIGKILL part way, each rerun continues the output, and
the result is the uninterrupted one line for line."""

import json
import signal
import subprocess
import sys
import time

import pytest

from mpt_jax import infer as infer_lib
from tests import helpers

ROOT = helpers.ROOT
LINES, BATCH = 4000, 8


@pytest.fixture(name="inputs", scope="module")
def inputs_file(tmp_path_factory):
  words = ["apple", "river", "stone", "cloud", "eagle", "tiger", "olive", "maple"]
  tasks = {"toy_first": "first", "toy_upper": "upper", "toy_vowel": "vowel"}
  path = tmp_path_factory.mktemp("inputs") / "inputs.jsonl"
  path.write_text("".join(
      json.dumps({"task": task, "inputs": f"{prefix}: {words[i % len(words)]}"}) + "\n"
      for i, (task, prefix) in zip(range(LINES), [*tasks.items()] * LINES)))
  return path


def _command(toy_run, backbone, inputs, output):
  model_dir, _ = toy_run
  return [sys.executable, "-m", "mpt_jax.infer", "--gin_file=runs/infer.gin",
          "--gin.TASK_MODULES=['tests.toy_tasks']", f"--gin.BACKBONE='{backbone}'",
          f"--gin.PROMPTS='{model_dir}'", f"--gin.OUTPUT='{output}'",
          "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 4}",
          f"--gin.infer.inputs='{inputs}'", f"--gin.infer.batch_size={BATCH}"]


def _lines(path) -> int:
  return path.read_text().count("\n") if path.exists() else 0


def _interrupt(command, output, sig):
  """Runs the command until it has written two more batches, then sends `sig`."""
  target = _lines(output) + 2 * BATCH
  process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 300
  while _lines(output) < target and process.poll() is None and time.time() < deadline:
    time.sleep(0.01)
  assert process.poll() is None, process.communicate()[0][-3000:]
  process.send_signal(sig)
  log = process.communicate(timeout=300)[0]
  return process.returncode, log


@pytest.mark.xdist_group("subprocesses")
def test_sigterm_and_sigkill_part_way_then_reruns_give_the_uninterrupted_output(
    toy_run, tiny_backbone_dir, inputs, tmp_path):
  output = tmp_path / "predictions.jsonl"
  command = _command(toy_run, tiny_backbone_dir, inputs, output)

  status, log = _interrupt(command, output, signal.SIGTERM)
  assert status == 75, log[-3000:]
  stopped_at = _lines(output)
  assert 2 * BATCH <= stopped_at < LINES and stopped_at % BATCH == 0
  assert f"Stopped by SIGTERM after {stopped_at} of {LINES} inputs" in log

  status, log = _interrupt(command, output, signal.SIGKILL)
  assert status == -signal.SIGKILL
  assert f"{stopped_at} of {LINES} inputs already predicted" in log
  killed_at = _lines(output)
  assert stopped_at < killed_at < LINES

  rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f"infer: {LINES}/{LINES} examples (100%)" in rerun.stderr
  assert "examples/s, ETA" in rerun.stderr

  model_dir, _ = toy_run
  uninterrupted = tmp_path / "uninterrupted.jsonl"
  infer_lib.infer(str(uninterrupted), prompts=str(model_dir), backbone=str(tiny_backbone_dir),
                  task_feature_lengths=helpers.TOY_LENGTHS, inputs=str(inputs),
                  batch_size=BATCH)
  assert output.read_text() == uninterrupted.read_text()
