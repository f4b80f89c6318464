"""The pipeline command as a user runs it (and launch/local.sh, which starts it), on the
toy tasks: its own process killed during a stage (which must stop, saving, rather than
run on as an orphan), rerun through local.sh, then rerun once more. One run sequence
(a session fixture); each test checks one behaviour through its files."""

import csv
import json
import subprocess
import sys
import time

import pytest

from tests import helpers

ROOT = helpers.ROOT
RUN_FILES = ("prompts.safetensors", "eval/results.json")


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


def _outputs(root):
  """{path: mtime} of every run's prompts and eval results."""
  return {p: p.stat().st_mtime_ns for name in RUN_FILES for p in root.rglob(name)}


@pytest.fixture(scope="session")  # once per worker, whatever runs between its tests
def pipeline(tmp_path_factory):
  """Runs the sequence once: start, SIGKILL to the pipeline process during the teachers
  stage, rerun with local.sh to the end, rerun again."""
  tmp = tmp_path_factory.mktemp("pipeline")
  backbone = helpers.write_tiny_backbone(tmp / "backbone")
  root = tmp / "root"
  first = subprocess.Popen(_command(root, backbone), cwd=ROOT, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while max(_steps(root / "teachers"), default=0) < 15 and time.time() < deadline:
    assert first.poll() is None, "the pipeline ended before it could be interrupted"
    time.sleep(0.05)
  lock = root / "teachers" / "run.lock"
  stage_pid = json.loads(lock.read_text())["pid"]
  first.kill()  # the pipeline's own process: its stage gets SIGTERM from the kernel
  first.wait()
  deadline = time.time() + 120
  while (lock.exists() or _alive(stage_pid)) and time.time() < deadline:
    time.sleep(0.05)
  stage_stopped = not lock.exists() and not _alive(stage_pid)
  checkpoints = [int(p.name.split("_")[1])
                 for p in (root / "teachers" / "checkpoints").iterdir()]
  killed_with_prompt = (root / "teachers" / "prompts.safetensors").exists()
  logged_at_stop = max(_steps(root / "teachers"))
  resumed = subprocess.run(_local_sh(root, backbone), cwd=ROOT, capture_output=True,
                           text=True, timeout=900)
  before_rerun = _outputs(root)
  rerun = subprocess.run(_command(root, backbone), cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
  return {"root": root, "killed_with_prompt": killed_with_prompt, "resumed": resumed,
          "rerun": rerun, "before_rerun": before_rerun, "stage_stopped": stage_stopped,
          "stopped_at": max(checkpoints), "logged_at_stop": logged_at_stop}


def _alive(pid):
  """Whether `pid` runs (a zombie, dead but not yet reaped by init, counts as dead)."""
  try:
    with open(f"/proc/{pid}/stat") as stat:
      return stat.read().split(")")[-1].split()[0] != "Z"
  except FileNotFoundError:
    return False


@pytest.mark.xdist_group("subprocesses")
def test_killing_the_pipeline_stops_its_stage_which_saves_where_it_stopped(pipeline):
  assert pipeline["stage_stopped"], "the teachers stage outlived its pipeline"
  assert not pipeline["killed_with_prompt"]
  # SIGTERM made it save the last step it ran, not only the last multiple of 10.
  assert pipeline["logged_at_stop"] == pipeline["stopped_at"] >= 15


@pytest.mark.xdist_group("subprocesses")
def test_an_interrupted_stage_resumes_where_it_stopped(pipeline):
  assert pipeline["resumed"].returncode == 0, pipeline["resumed"].stderr[-3000:]
  # It continued from the step it saved on SIGTERM: no step lost or run twice.
  assert _steps(pipeline["root"] / "teachers") == list(range(1, 61))


@pytest.mark.xdist_group("subprocesses")
def test_a_rerun_of_a_finished_pipeline_changes_no_output(pipeline):
  assert pipeline["rerun"].returncode == 0, pipeline["rerun"].stderr[-3000:]
  evaluated = [p for p in pipeline["before_rerun"] if p.name == "results.json"]
  assert len(evaluated) == 4  # prompt tuning and MPT, full data and k = 4
  assert _outputs(pipeline["root"]) == pipeline["before_rerun"]


@pytest.mark.xdist_group("subprocesses")
def test_the_results_have_a_row_per_method_and_setting(pipeline):
  root = pipeline["root"]
  columns = next(csv.reader(open(root / "results.csv")))
  assert columns == ["method", "setting", "n", "toy_first", "toy_first_std", "toy_vowel",
                     "toy_vowel_std", "average", "average_std"]
  table = json.loads((root / "results.json").read_text())
  assert {(r["method"], r["setting"]) for r in table["rows"]} == {
      ("prompt_tuning", "full"), ("mpt", "full"), ("prompt_tuning", "k=4"), ("mpt", "k=4")}
  few_shot = json.loads((root / "adapt/mpt/k4_d0/seed0/eval/results.json").read_text())
  row = next(r for r in table["rows"] if (r["method"], r["setting"]) == ("mpt", "k=4"))
  assert row["cells"]["toy_vowel"]["values"] == [
      few_shot["results"]["validation"]["toy_vowel_k4_s0"]["accuracy"]]


@pytest.mark.xdist_group("subprocesses")
def test_local_sh_prints_the_results_table(pipeline):
  markdown = (pipeline["root"] / "results.md").read_text()
  assert markdown.startswith(
      "| method | setting | n | toy_first (accuracy) | toy_vowel (accuracy) | average |")
  assert markdown in pipeline["resumed"].stdout
  assert markdown in pipeline["rerun"].stdout


@pytest.mark.xdist_group("subprocesses")
def test_the_training_curves_are_plotted(pipeline):
  curves = (pipeline["root"] / "curves.png").read_bytes()
  assert curves.startswith(b"\x89PNG") and len(curves) > 1000
