"""`python -m mpt_jax.train` and `python -m mpt_jax.eval` as a user runs them: resume
after SIGKILL, a checkpoint and a distinct exit status on SIGTERM, one writer per
MODEL_DIR, flag errors, --help."""

import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mpt_jax
from tests import helpers

ROOT = helpers.ROOT


@pytest.fixture(name="uninterrupted", scope="module")
def uninterrupted_toy_run(tmp_path_factory, tiny_backbone_dir):
  """The final prompt of tests/toy.gin's 200 steps, run without interruption."""
  model_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
  return helpers.train_toy(model_dir, tiny_backbone_dir, train_steps=200).prompts


def _start_and_wait(model_dir, backbone, step, *extra):
  """A toy run in the background, once it has logged `step`."""
  process = subprocess.Popen(helpers.toy_train_command(model_dir, backbone, *extra),
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
  deadline = time.time() + 300
  while (helpers.last_logged_step(model_dir) < step and process.poll() is None and
         time.time() < deadline):
    time.sleep(0.02)
  assert process.poll() is None, process.communicate()[0][-3000:]
  return process


def _rerun(model_dir, backbone):
  rerun = subprocess.run(helpers.toy_train_command(model_dir, backbone), cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  return rerun


@pytest.mark.xdist_group("subprocesses")
def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path, tiny_backbone_dir,
                                                          uninterrupted):
  model_dir = tmp_path / "killed"
  process = _start_and_wait(model_dir, tiny_backbone_dir, 25)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert process.returncode == -signal.SIGKILL
  killed_at = helpers.last_logged_step(model_dir)
  assert 25 <= killed_at < 200 and not (model_dir / "prompts.safetensors").exists()

  rerun = _rerun(model_dir, tiny_backbone_dir)
  assert "Resuming" in rerun.stderr
  assert "Taking over the lock" in rerun.stderr and "is gone" in rerun.stderr
  resumed = mpt_jax.load_prompts(model_dir / "prompts.safetensors")
  np.testing.assert_array_equal(resumed.merged(), uninterrupted.merged())


@pytest.mark.xdist_group("subprocesses")
def test_sigterm_saves_the_current_step_and_exits_75_then_resumes_bitwise(
    tmp_path, tiny_backbone_dir, uninterrupted):
  model_dir = tmp_path / "preempted"
  process = _start_and_wait(model_dir, tiny_backbone_dir, 15)
  process.send_signal(signal.SIGTERM)
  output, _ = process.communicate(timeout=120)
  assert process.returncode == 75, output[-3000:]
  stopped_at = int(re.search(r"Preempted at step (\d+)", output).group(1))
  assert 15 <= stopped_at < 200
  steps = sorted(int(p.name.split("_")[1]) for p in (model_dir / "checkpoints").iterdir())
  assert steps[-1] == stopped_at  # saved where it stopped, not at the last period
  assert not (model_dir / "run.lock").exists()  # released

  rerun = _rerun(model_dir, tiny_backbone_dir)
  assert f"from step {stopped_at}" in rerun.stderr
  assert "Taking over" not in rerun.stderr
  resumed = mpt_jax.load_prompts(model_dir / "prompts.safetensors")
  np.testing.assert_array_equal(resumed.merged(), uninterrupted.merged())


@pytest.mark.xdist_group("subprocesses")
def test_a_second_writer_is_refused_while_the_first_runs(tmp_path, tiny_backbone_dir):
  model_dir = tmp_path / "shared"
  first = _start_and_wait(model_dir, tiny_backbone_dir, 5, "--gin.train.train_steps=1000000")
  second = subprocess.run(helpers.toy_train_command(model_dir, tiny_backbone_dir), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  still_running = first.poll() is None
  first.kill()
  first.communicate()
  assert still_running and second.returncode != 0
  assert f"is in use by pid {first.pid} on host" in second.stderr
  assert "-m mpt_jax.train --gin_file=tests/toy.gin" in second.stderr  # the holder's command


@pytest.mark.xdist_group("subprocesses")
def test_cli_errors_name_the_problem(tmp_path, tiny_backbone_dir):
  typo = subprocess.run(
      helpers.toy_train_command(tmp_path / "a", tiny_backbone_dir, "--gin.train.trian_steps=3"),
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert typo.returncode != 0 and "trian_steps" in typo.stderr
  missing = subprocess.run(helpers.toy_train_command(tmp_path / "b", tmp_path / "missing"),
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
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
