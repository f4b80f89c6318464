"""Stage processes: their command lines, gin bindings of Python values, skipping finished
stages, running the rest with the compilation cache, and failing clearly."""

import os
import sys

from etils import epath
import pytest

from mpt_jax.pipeline import stages

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
  assert _launcher(tmp_path).run("teachers", command, done) is False
  assert not marker.exists()
  assert done.read_text() == "earlier"


def test_a_stage_runs_with_the_compilation_cache_in_its_environment(tmp_path, monkeypatch):
  monkeypatch.setenv("STAGES_TEST_MARK", "inherited")
  monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
  launcher = _launcher(tmp_path)
  done = epath.Path(tmp_path) / "out" / "done"
  done.parent.mkdir()
  assert launcher.run("teachers", [sys.executable, "-c", WRITE_DONE, str(done)], done) is True
  # The stage's own `import mpt_jax` chooses the log level, not the launcher.
  assert done.read_text() == f"{tmp_path / 'cache'}|unset|inherited"


def test_a_stage_keeps_the_callers_log_level(tmp_path, monkeypatch):
  monkeypatch.setenv("STAGES_TEST_MARK", "x")
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
  done = epath.Path(tmp_path) / "done"
  _launcher(tmp_path).run("eval", [sys.executable, "-c", WRITE_DONE, str(done)], done)
  assert done.read_text().split("|")[1] == "0"


def test_a_failing_stage_raises_naming_the_stage_and_its_exit_code(tmp_path):
  done = epath.Path(tmp_path) / "run" / "prompts.safetensors"
  command = [sys.executable, "-c", "import sys; sys.exit(3)"]
  with pytest.raises(stages.StageFailedError,
                     match=rf"Stage mpt k16_d0 seed 1 failed \(exit code 3\).*{tmp_path}/run"):
    _launcher(tmp_path).run("mpt k16_d0 seed 1", command, done)


def test_a_stage_that_succeeds_without_its_output_is_a_failure(tmp_path):
  done = epath.Path(tmp_path) / "prompts.safetensors"
  with pytest.raises(stages.StageFailedError, match=r"Stage distill failed \(exit code 0\)"):
    _launcher(tmp_path).run("distill", [sys.executable, "-c", "pass"], done)
  assert not os.path.exists(done)
