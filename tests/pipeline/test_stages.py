"""Stage processes: their command lines, gin bindings of Python values, skipping finished
stages, running the rest with the compilation cache, failing clearly, reporting a
preempted stage, and never outliving the pipeline."""

import os
import signal
import subprocess
import sys
import threading
import time

from etils import epath
import pytest

from mpt_jax.pipeline import stages
from tests import helpers

# Writes the child's view of three environment variables into the done file, sys.argv[1].
WRITE_DONE = ("import os, pathlib, sys; pathlib.Path(sys.argv[1]).write_text("
              "os.environ['JAX_COMPILATION_CACHE_DIR'] + '|' + "
              "os.environ.get('TF_CPP_MIN_LOG_LEVEL', 'unset') + '|' + "
              "os.environ['STAGES_TEST_MARK'])")


def _launcher(tmp_path, stage_flags=("--tfds_data_dir=/data",)):
  return stages.StageLauncher(["shared.gin", "more.gin"], ["A=1", "B='x'"], stage_flags,
                              epath.Path(tmp_path) / "cache")


@pytest.mark.parametrize("value, expected", [
    (3, "SEED=3"),
    ("/runs/a", "SEED='/runs/a'"),
    (["t1", "t2"], "SEED=['t1', 't2']"),
    (("validation", "test"), "SEED=('validation', 'test')"),
    (None, "SEED=None"),
    ({"t": "s"}, "SEED={'t': 's'}"),
])
def test_a_binding_is_the_name_and_the_values_repr(value, expected):
  assert stages.binding("SEED", value) == expected


def test_a_command_puts_the_stages_gin_before_the_shared_gin_then_adds_the_flags(tmp_path):
  command = _launcher(tmp_path).command("mpt_jax.train", ["runs/teachers.gin"],
                                        ["MODEL_DIR='/m'", "SEED=0"])
  assert command == [
      sys.executable, "-m", "mpt_jax.train",
      "--gin_file=runs/teachers.gin", "--gin_file=shared.gin", "--gin_file=more.gin",
      "--gin_bindings=MODEL_DIR='/m'", "--gin_bindings=SEED=0",
      "--gin_bindings=A=1", "--gin_bindings=B='x'",
      "--tfds_data_dir=/data"]


def test_a_command_without_shared_leaves_out_the_pipelines_gin_but_keeps_the_flags(tmp_path):
  command = _launcher(tmp_path).command("mpt_jax.pipeline.pretraining", ["pre.gin"],
                                        ["MODEL_DIR='/b'"], shared=False)
  assert command == [sys.executable, "-m", "mpt_jax.pipeline.pretraining",
                     "--gin_file=pre.gin", "--gin_bindings=MODEL_DIR='/b'",
                     "--tfds_data_dir=/data"]


def test_a_finished_stage_is_skipped(tmp_path):
  done = epath.Path(tmp_path) / "done"
  done.write_text("earlier")
  marker = tmp_path / "ran"
  command = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
  assert _launcher(tmp_path).run("teachers", command, [done]) is False
  assert not marker.exists()
  assert done.read_text() == "earlier"


def test_a_stage_runs_with_the_compilation_cache_in_its_environment(tmp_path, monkeypatch):
  monkeypatch.setenv("STAGES_TEST_MARK", "inherited")
  monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
  launcher = _launcher(tmp_path)
  done = epath.Path(tmp_path) / "out" / "done"
  done.parent.mkdir()
  assert launcher.run("teachers", [sys.executable, "-c", WRITE_DONE, str(done)],
                      [done]) is True
  # The stage's own `import mpt_jax` chooses the log level, not the launcher.
  assert done.read_text() == f"{tmp_path / 'cache'}|unset|inherited"


def test_a_stage_keeps_the_callers_log_level(tmp_path, monkeypatch):
  monkeypatch.setenv("STAGES_TEST_MARK", "x")
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
  done = epath.Path(tmp_path) / "done"
  _launcher(tmp_path).run("eval", [sys.executable, "-c", WRITE_DONE, str(done)], [done])
  assert done.read_text().split("|")[1] == "0"


def test_a_failing_stage_raises_naming_the_stage_and_its_exit_code(tmp_path):
  done = epath.Path(tmp_path) / "run" / "prompts.safetensors"
  command = [sys.executable, "-c", "import sys; sys.exit(3)"]
  with pytest.raises(stages.StageFailedError,
                     match=rf"Stage mpt k16_d0 seed 1 failed \(exit code 3\).*{tmp_path}/run"):
    _launcher(tmp_path).run("mpt k16_d0 seed 1", command, [done])


def test_a_stage_that_succeeds_without_its_output_is_a_failure(tmp_path):
  done = epath.Path(tmp_path) / "prompts.safetensors"
  with pytest.raises(stages.StageFailedError, match=r"Stage distill failed \(exit code 0\)"):
    _launcher(tmp_path).run("distill", [sys.executable, "-c", "pass"], [done])
  assert not os.path.exists(done)


def test_a_bank_is_complete_when_every_run_has_its_output(tmp_path):
  done = [epath.Path(tmp_path) / name / "prompts.safetensors" for name in ("a", "b", "c")]
  writes_two = ("import pathlib, sys\n"
                "for path in sys.argv[1:]:\n"
                "  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)\n"
                "  pathlib.Path(path).write_text('')\n")
  with pytest.raises(stages.StageFailedError, match=r"Stage bank failed \(exit code 0; 1 of "
                     r"its outputs are missing, e\.g\. .*/c/prompts\.safetensors\); its "
                     r"output is in 3 run directories"):
    _launcher(tmp_path).run("bank", [sys.executable, "-c", writes_two, *map(str, done[:2])],
                            done)
  assert _launcher(tmp_path).run("bank", [sys.executable, "-c", writes_two, str(done[2])],
                                 done) is True
  assert _launcher(tmp_path).run("bank", [sys.executable, "-c", "raise SystemExit(1)"],
                                 done) is False  # all three there: skipped


def test_a_stage_that_saved_and_stopped_on_sigterm_is_reported_as_preempted(tmp_path):
  done = epath.Path(tmp_path) / "prompts.safetensors"
  command = [sys.executable, "-c", "import sys; sys.exit(75)"]
  with pytest.raises(stages.StagePreemptedError, match="Stage teachers was stopped by "
                     "SIGTERM.*Rerun the same command to resume"):
    _launcher(tmp_path).run("teachers", command, [done])


# Exits 75 on SIGTERM after noting it in sys.argv[1]; otherwise sleeps.
STOPS_ON_SIGTERM = ("import pathlib, signal, sys, time\n"
                    "def stop(*_):\n"
                    "  pathlib.Path(sys.argv[1]).write_text('got SIGTERM'); sys.exit(75)\n"
                    "signal.signal(signal.SIGTERM, stop)\n"
                    "pathlib.Path(sys.argv[1] + '.started').touch()\n"
                    "time.sleep(120)\n")


def test_sigterm_to_the_pipeline_is_passed_on_to_its_stage(tmp_path):
  note = tmp_path / "note"
  def terminate_once_started():
    while not (tmp_path / "note.started").exists():
      time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)
  threading.Thread(target=terminate_once_started, daemon=True).start()
  with pytest.raises(stages.StagePreemptedError):
    _launcher(tmp_path).run("adapt", [sys.executable, "-c", STOPS_ON_SIGTERM, str(note)],
                            [epath.Path(tmp_path) / "done"])
  assert note.read_text() == "got SIGTERM"
  assert signal.getsignal(signal.SIGTERM) is not None  # the caller's handler is back


# A pipeline-like parent: starts a stage through StageLauncher and blocks on it.
PARENT = ("import sys\n"
          "from etils import epath\n"
          "from mpt_jax.pipeline import stages\n"
          "launcher = stages.StageLauncher([], [], [], epath.Path(sys.argv[1]))\n"
          "launcher.run('child', [sys.executable, '-c', sys.argv[2], sys.argv[3]],\n"
          "             [epath.Path(sys.argv[1]) / 'done'])\n")
# The stage: takes cli's start-up step, records its pid, then waits for SIGTERM.
STAGE = ("import os, pathlib, signal, sys, time\n"
         "from mpt_jax import cli\n"
         "cli.die_with_parent()\n"
         "signal.signal(signal.SIGTERM, lambda *_: (pathlib.Path(sys.argv[1] + '.term')"
         ".touch(), sys.exit(75)))\n"
         "pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))\n"
         "time.sleep(120)\n")


def test_a_stage_gets_sigterm_when_its_pipeline_is_killed(tmp_path):
  pid_file = tmp_path / "stage_pid"
  parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path), STAGE,
                             str(pid_file)], cwd=helpers.ROOT)
  deadline = time.time() + 120
  while not pid_file.exists() and time.time() < deadline:
    time.sleep(0.05)
  parent.kill()
  parent.wait()
  deadline = time.time() + 30
  while not (tmp_path / "stage_pid.term").exists() and time.time() < deadline:
    time.sleep(0.05)
  assert (tmp_path / "stage_pid.term").exists(), "the stage outlived its pipeline"
