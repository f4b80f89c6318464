"""The paper's own path as a user runs it: `python -m mpt_jax.pipeline
--gin_file=pipelines/paper_t5_base.gin` with the real task catalog, shrunk only by gin
bindings (a tiny random backbone, two sources, two targets, few steps, one few-shot
setting), on mocked TFDS data for every dataset it names (tests/mocked_tfds_site). Every
stage gin file in runs/ runs once along the way; one session fixture runs it all. Then
`python -m mpt_jax.infer --gin_file=runs/infer.gin` predicts a catalog split with one of
the adapted prompts."""

import ast
import json
import os
import pathlib
import re
import string
import subprocess
import sys

import pytest

from tests import helpers

ROOT = helpers.ROOT
SHRINK = ["TRAIN_STEPS = 4", "EVAL_PERIOD = 2", "BATCH_SIZE = 4", "PROMPT_LENGTH = 4",
          "TASK_FEATURE_LENGTHS = {'inputs': 32, 'targets': 8}", "EvalConfig.batch_size = 4"]
METHODS = ["prompt_tuning", "spot", "mpt", "mpt_multitarget"]
# Every character of the mocked examples and of the ATTEMPT-style targets.
CORPUS = [" ".join(["premise hypothesis sentence question context passage query entities",
                    "glue mnli sst2 rte mrpc train validation_mismatched validation_matched",
                    string.ascii_letters, string.digits, string.punctuation])] * 20
ERROR_LINE = re.compile(r"^(E\d{4} |ERROR|Traceback)", re.MULTILINE)


def mocked_env():
  """The environment of a command that reads the mocked catalog data, with the log
  levels a user's shell has (none: the commands choose)."""
  site = ROOT / "tests" / "mocked_tfds_site"
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  return {**env, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "JAX_PLATFORMS": "cpu"}


@pytest.fixture(scope="session")
def paper_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("paper")
  backbone = helpers.write_tiny_backbone(tmp / "backbone")
  vocabulary = helpers.write_sentencepiece_model(tmp / "spm", CORPUS, vocab_size=120)
  root = tmp / "root"
  command = [
      sys.executable, "-m", "mpt_jax.pipeline", "--gin_file=pipelines/paper_t5_base.gin",
      f"--gin.ROOT_DIR='{root}'",
      "--gin.TASK_MODULES=['tasks.catalog', 'tests.catalog_subset']",
      f"--gin.run_pipeline.backbone='{backbone}'",
      "--gin.run_pipeline.source_mixture='mpt_test_sources'",
      "--gin.run_pipeline.target_mixture='mpt_test_targets'",
      f"--gin.run_pipeline.methods={METHODS}", "--gin.run_pipeline.few_shot_ks=[4]",
      "--gin.run_pipeline.few_shot_draws=1", "--gin.run_pipeline.seeds=[0]",
      f"--gin.run_pipeline.bindings={SHRINK}", f"--sentencepiece_model={vocabulary}"]
  completed = subprocess.run(command, cwd=ROOT, env=mocked_env(), capture_output=True,
                             text=True, timeout=1200)
  return root, completed


@pytest.mark.xdist_group("paper_pipeline")
def test_every_stage_runs_and_the_table_has_a_row_per_method_and_setting(paper_run):
  root, completed = paper_run
  assert completed.returncode == 0, completed.stderr[-4000:]
  table = (root / "results.md").read_text()
  assert table.splitlines()[0] == ("| method | setting | n | mpt_glue_mrpc (accuracy) | "
                                   "mpt_glue_rte (accuracy) | average |")
  for method in METHODS:
    for setting in ("full", "k=4"):
      assert re.search(rf"^\| {method} \| {setting} \| 1 \| [\d.]+ \| [\d.]+ \| [\d.]+ \|$",
                       table, re.MULTILINE), table
  assert "±" not in table.split("\n\n")[0]  # single runs show no spread
  assert (root / "curves.png").read_bytes()[:4] == b"\x89PNG"
  for run in (root / "adapt").glob("*/*/seed0"):
    assert (run / "prompts.safetensors").exists() and (run / "eval" / "results.json").exists()


@pytest.mark.xdist_group("paper_pipeline")
def test_every_stage_gin_file_ran_through_a_command(paper_run):
  root, completed = paper_run
  started = [line for line in completed.stderr.splitlines() if "] starting: mpt_jax." in line]
  used = {f for line in started for f in re.findall(r"--gin_file=(runs/\S+\.gin)", line)}
  # Stage 3 ran as a job per prompt: each job's gin file lists its runs' own gin files.
  banks = sorted((root / "adapt" / "banks").glob("*/bank.gin"))
  assert [b.parent.name for b in banks] == ["mpt", "mpt_multitarget", "prompt_bank"]
  for bank in banks:
    assert any(f"mpt_jax.train --gin_file={bank}" in line for line in started)
    text = bank.read_text()
    listed = ast.literal_eval(text[text.index("sweep.runs = ") + len("sweep.runs = "):])
    used |= {f for run in listed for f in run["gin_files"] if f.startswith("runs/")}
  assert used == {f"runs/{p.name}" for p in (ROOT / "gin" / "runs").glob("*.gin")
                  if p.name not in ("common.gin", "infer.gin")}  # included; run below
  assert any(line.split("starting: ")[1].startswith("mpt_jax.eval --gin_file=runs/eval.gin")
             for line in started)


@pytest.mark.xdist_group("paper_pipeline")
def test_infer_predicts_a_catalog_split_with_an_adapted_prompt(paper_run, tmp_path):
  root, completed = paper_run
  assert completed.returncode == 0, completed.stderr[-4000:]
  run = root / "adapt" / "mpt" / "full" / "seed0"
  tasks = json.loads((run / "tasks.json").read_text())["tasks"]
  output = tmp_path / "predictions.jsonl"
  inferred = subprocess.run(
      [sys.executable, "-m", "mpt_jax.infer", "--gin_file=runs/infer.gin",
       "--gin.TASK_MODULES=['tasks.catalog', 'tests.catalog_subset']",
       f"--gin.BACKBONE='{root.parent / 'backbone'}'", f"--gin.PROMPTS='{run}'",
       f"--gin.OUTPUT='{output}'", "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}",
       "--gin.infer.num_examples=3", "--gin.DecodingConfig.beam_size=2",
       f"--sentencepiece_model={root.parent / 'spm' / 'spm.model'}"],
      cwd=ROOT, env=mocked_env(), capture_output=True, text=True, timeout=600)
  assert inferred.returncode == 0, inferred.stderr[-4000:]
  rows = [json.loads(line) for line in output.read_text().splitlines()]
  assert [r["task"] for r in rows] == [t for t in tasks for _ in range(3)]
  for row in rows:  # ATTEMPT's format of a mocked validation example, with its label
    assert row["inputs"].startswith(row["task"].split("_")[-1] + " ") and row["targets"]
    assert isinstance(row["prediction"], str) and row["score"] < 0
  assert not ERROR_LINE.findall(inferred.stderr)


@pytest.mark.xdist_group("paper_pipeline")
def test_the_stages_use_attempts_text_format_and_log_no_errors(paper_run):
  root, completed = paper_run
  assert "text_format.style = 'attempt'" in (root / "teachers" / "config.gin").read_text()
  assert not ERROR_LINE.findall(completed.stdout + completed.stderr), (
      [line for line in completed.stderr.splitlines() if ERROR_LINE.match(line)][:5])
  # Truncation is reported per task with its share, not left to happen silently.
  assert re.search(r"mpt_glue_rte train: \d+ of the first \d+ examples \([\d.]+%\) have "
                   r"inputs longer than 32 tokens", completed.stderr)


@pytest.mark.xdist_group("paper_pipeline")
def test_an_unprepared_dataset_stops_the_stage_command_before_it_writes(tmp_path):
  backbone = helpers.write_tiny_backbone(tmp_path / "backbone")
  data_dir, model_dir = tmp_path / "tfds", tmp_path / "teachers"
  data_dir.mkdir()
  completed = subprocess.run(
      [sys.executable, "-m", "mpt_jax.train", "--gin_file=runs/teachers.gin",
       f"--gin.MODEL_DIR='{model_dir}'", f"--gin.BACKBONE='{backbone}'",
       f"--tfds_data_dir={data_dir}", "--sentencepiece_model=/unused.model"],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env={**mocked_env(), "PYTHONPATH": str(ROOT)})  # the real TFDS, no mock
  assert completed.returncode != 0
  assert "not prepared in" in completed.stderr
  assert re.search(rf"tfds build glue/\w+ --data_dir={re.escape(str(data_dir))}",
                   completed.stderr)
  assert not model_dir.exists()
  assert not pathlib.Path(data_dir).joinpath("downloads").exists()  # nothing fetched
