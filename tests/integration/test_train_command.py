"""`python -m mpt_jax.train` and `python -m mpt_jax.eval` as a user runs them: resume
after SIGKILL, a checkpoint and a distinct exit status on SIGTERM, one writer per
MODEL_DIR, flag errors, --help."""

import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mpt_jax
from tests import faults
from tests import helpers

ROOT = helpers.ROOT


STEPS = "--gin.train.train_steps=100"  # tests/toy.gin's run, shortened


@pytest.fixture(name="uninterrupted", scope="module")
def uninterrupted_toy_run(tmp_path_factory, tiny_backbone_dir):
  """The final prompt of the toy run's 100 steps, run without interruption."""
  model_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
  return helpers.train_toy(model_dir, tiny_backbone_dir, train_steps=100).prompts


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


@pytest.mark.xdist_group("subprocesses")
def test_a_sigkilled_then_preempted_run_resumes_bitwise_each_time(tmp_path, tiny_backbone_dir,
                                                                 uninterrupted):
  model_dir = tmp_path / "run"
  process = _start_and_wait(model_dir, tiny_backbone_dir, 25, STEPS)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert process.returncode == -signal.SIGKILL
  killed_at = helpers.last_logged_step(model_dir)
  assert 25 <= killed_at < 100 and not (model_dir / "prompts.safetensors").exists()

  # The rerun takes over the dead run's lock and resumes; SIGTERM stops it again.
  process = _start_and_wait(model_dir, tiny_backbone_dir, killed_at + 15, STEPS)
  process.send_signal(signal.SIGTERM)
  output, _ = process.communicate(timeout=120)
  assert process.returncode == 75, output[-3000:]
  assert "Resuming" in output
  assert "Taking over the lock" in output and "is gone" in output
  stopped_at = int(re.search(r"Preempted at step (\d+)", output).group(1))
  assert killed_at + 15 <= stopped_at < 100
  steps = sorted(int(p.name.split("_")[1]) for p in (model_dir / "checkpoints").iterdir())
  assert steps[-1] == stopped_at  # saved where it stopped, not at the last period
  assert not (model_dir / "run.lock").exists()  # released

  rerun = subprocess.run(helpers.toy_train_command(model_dir, tiny_backbone_dir, STEPS),
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
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


# The toy run's 100 steps as a sweep of 4 runs, logged every 5 steps.
SWEEP = ("--gin.sweep.grid={'train.seed': [0, 1], "
         "'make_optimizer.learning_rate': [0.1, 0.3]}", STEPS, "--gin.train.log_period=5")
SWEEP_RUNS = ("seed=0,learning_rate=0.1", "seed=0,learning_rate=0.3",
              "seed=1,learning_rate=0.1", "seed=1,learning_rate=0.3")


def _sweep_prompts(home):
  return {name: mpt_jax.load_prompts(home / name / "prompts.safetensors").merged()
          for name in SWEEP_RUNS}


@pytest.fixture(name="uninterrupted_sweep", scope="module")
def uninterrupted_toy_sweep(tmp_path_factory, tiny_backbone_dir):
  """tests/toy.gin's run as a sweep of 4 runs in one job, run without interruption:
  each run's final prompt."""
  home = tmp_path_factory.mktemp("uninterrupted_sweep") / "sweep"
  run = subprocess.run(helpers.toy_train_command(home, tiny_backbone_dir, *SWEEP), cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "| rank | run | best dev metric | last loss (step) | status |" in run.stdout
  return _sweep_prompts(home)


def _start_sweep_and_wait(home, backbone, step):
  """The toy sweep in the background, once its first run has logged `step`."""
  process = subprocess.Popen(helpers.toy_train_command(home, backbone, *SWEEP), cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 300
  while helpers.last_logged_step(home / SWEEP_RUNS[0]) < step and process.poll() is None \
      and time.time() < deadline:
    time.sleep(0.02)
  assert process.poll() is None, process.communicate()[0][-3000:]
  return process


@pytest.mark.xdist_group("subprocesses")
def test_a_killed_then_preempted_and_damaged_sweep_resumes_every_run_bitwise(
    tmp_path, tiny_backbone_dir, uninterrupted_sweep):
  home = tmp_path / "sweep"
  process = _start_sweep_and_wait(home, tiny_backbone_dir, 25)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert 25 <= helpers.last_logged_step(home / SWEEP_RUNS[0]) < 100
  # Rerun; then SIGTERM makes every run save the step it stopped at.
  process = _start_sweep_and_wait(home, tiny_backbone_dir, 45)
  process.send_signal(signal.SIGTERM)
  output, _ = process.communicate(timeout=120)
  assert process.returncode == 75, output[-3000:]
  assert "Resuming the bank of 4 runs" in output
  stopped_at = int(re.search(r"Preempted at step (\d+)", output).group(1))
  saved = sorted(int(p.name.split("_")[1]) for p in
                 (home / SWEEP_RUNS[0] / "checkpoints").iterdir())
  assert saved[-1] == stopped_at and len(saved) >= 2
  for name in SWEEP_RUNS:
    assert (home / name / "checkpoints" / f"checkpoint_{stopped_at}").is_dir()
  # Take one run's last checkpoint away, as if the bank had been killed between two runs'
  # saves, and damage another run's checkpoint before it.
  shutil.rmtree(home / SWEEP_RUNS[2] / "checkpoints" / f"checkpoint_{stopped_at}")
  faults.corrupt(home / SWEEP_RUNS[1] / "checkpoints" / f"checkpoint_{saved[-2]}",
                 "flip_bytes")
  rerun = subprocess.run(helpers.toy_train_command(home, tiny_backbone_dir, *SWEEP), cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "cannot be used" in rerun.stderr
  assert "newer than its bank's last common step" in rerun.stderr
  resumed = _sweep_prompts(home)
  for name in SWEEP_RUNS:
    np.testing.assert_array_equal(resumed[name], uninterrupted_sweep[name], err_msg=name)
  assert len(list((home / SWEEP_RUNS[1] / "checkpoints_corrupt").glob("*.reason.txt"))) == 1
  summary = (home / "summary.md").read_text()
  assert all(f"| {name} |" in summary for name in SWEEP_RUNS)
