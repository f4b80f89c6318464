"""Every gin file the package ships parses, with the macros a user must set bound, in a
process that has imported only the command that reads it (as `python -m` would):
a binding of a configurable the command does not know fails here."""

import json
import pathlib
import subprocess
import sys

import pytest

from mpt_jax import cli
from tests import helpers

GIN = cli.package_gin_dir()
REQUIRED = ["MODEL_DIR='/tmp/x'", "BACKBONE='/tmp/b'", "TEACHER_PROMPTS='/tmp/t'",
            "SOURCE_PROMPTS='/tmp/s'", "TARGET_MIXTURE='glue_mpt'", "SPOT_SOURCES='s'",
            "TARGET_TASKS=['mpt_glue_rte']", "PROMPTS='/tmp/p'", "ROOT_DIR='/tmp/r'",
            "OUTPUT='/tmp/o.jsonl'"]
# few_shot.gin completes a method file; common.gin is included by every stage file.
STAGES = sorted(p.name for p in (GIN / "runs").glob("*.gin")
                if p.name not in ("common.gin", "few_shot.gin", "eval.gin", "infer.gin"))
SIZES = [f"models/{p.name}" for p in sorted((GIN / "models").glob("*.gin"))] + [
    "smoke/synthetic.gin", "smoke/synthetic_spm.gin"]
# Parses each list of files as cli.parse_gin does (task modules first), then reads a
# parameter back; prints {"files": ..., "error": ...} for each that fails.
_PARSE = """
import json, sys, gin
from mpt_jax import cli
from tasks import registry
import {module}
gin.add_config_file_search_path({gin_dir!r})
failures = []
for files in {combos!r}:
  try:
    gin.clear_config()
    registry.import_task_modules(cli.task_modules_named(files, {bindings!r}))
    gin.parse_config_files_and_bindings(files, {bindings!r})
    gin.query_parameter({check!r})
  except Exception as e:  # pylint: disable=broad-except
    failures.append({{"files": files, "error": repr(e)}})
print(json.dumps(failures))
"""


def _parse_in_process(module: str, combos, check: str):
  script = _PARSE.format(module=module, gin_dir=str(GIN), combos=combos,
                         bindings=REQUIRED, check=check)
  done = subprocess.run([sys.executable, "-c", script], cwd=helpers.ROOT,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.xdist_group("subprocesses")
def test_stage_files_parse_for_train_with_every_model_file():
  combos = [[f"runs/{stage}", size] for stage in STAGES for size in SIZES]
  combos += [[f"runs/{method}", "runs/few_shot.gin", size]
             for method in ("adapt.gin", "prompt_tuning.gin", "spot.gin") for size in SIZES]
  assert _parse_in_process("mpt_jax.train", combos, "train.model_dir") == []


# What `python -m mpt_jax.aot` builds before compiling: every stage's abstract step inputs,
# on this process's one device, the backbone's shape from each model file.
_AOT = """
import json, gin
from mpt_jax import aot, cli
from tasks import registry
gin.add_config_file_search_path({gin_dir!r})
shapes, failures = {{}}, []
for files in {combos!r}:
  try:
    gin.clear_config()
    registry.import_task_modules(cli.task_modules_named(files, {bindings!r}))
    gin.parse_config_files_and_bindings(files, {bindings!r}, finalize_config=False)
    run = aot.abstract_run(aot.backbone_config(None), None)
    shapes[" ".join(files)] = [run.batch["encoder_input_tokens"].shape,
                               run.frozen["encoder"]["relpos_bias"]["rel_embedding"].shape]
  except Exception as e:  # pylint: disable=broad-except
    failures.append({{"files": files, "error": repr(e)}})
print(json.dumps({{"shapes": shapes, "failures": failures}}))
"""


@pytest.mark.xdist_group("subprocesses")
def test_every_stage_file_with_every_model_file_builds_the_aot_commands_abstract_step():
  combos = [[f"runs/{stage}", size] for stage in STAGES for size in SIZES
            if size.startswith("models/")]
  bindings = [b for b in REQUIRED if not b.startswith("BACKBONE=")] + ["NUM_PARTITIONS=1"]
  script = _AOT.format(gin_dir=str(GIN), combos=combos, bindings=bindings)
  done = subprocess.run([sys.executable, "-c", script], cwd=helpers.ROOT,
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads(done.stdout.strip().splitlines()[-1])
  assert result["failures"] == []
  assert len(result["shapes"]) == len(combos)
  heads = {"t5_1_1_xxl": 64, "t5_1_1_base": 12, "t5_base": 12}
  for files, (batch, relpos) in result["shapes"].items():
    model = files.split("models/")[1][:-len(".gin")]
    # [runs of the bank, batch, length]
    assert batch == [1, 100 if model == "t5_1_1_small" else 12 if "large" in model else 32,
                     256]
    if model in heads:
      assert relpos[0] == heads[model], files


@pytest.mark.xdist_group("subprocesses")
def test_the_eval_file_parses_for_eval_with_every_model_file():
  combos = [["runs/eval.gin", size] for size in SIZES]
  assert _parse_in_process("mpt_jax.eval", combos, "evaluate.prompts") == []


@pytest.mark.xdist_group("subprocesses")
def test_the_infer_file_parses_for_infer_with_every_model_file():
  combos = [["runs/infer.gin", size] for size in SIZES]
  assert _parse_in_process("mpt_jax.infer", combos, "DecodingConfig.beam_size") == []


@pytest.mark.xdist_group("subprocesses")
def test_pipeline_files_parse_for_their_commands():
  pipelines = [[f"pipelines/{p.name}"] for p in sorted((GIN / "pipelines").glob("*.gin"))
               if p.name != "demo_pretrain.gin"]
  assert _parse_in_process("mpt_jax.pipeline.__main__", pipelines,
                           "run_pipeline.root_dir") == []
  assert _parse_in_process("mpt_jax.pipeline.pretraining", [["pipelines/demo_pretrain.gin"]],
                           "pretrain.model_dir") == []


def test_the_package_finds_its_gin_files():
  assert (GIN / "runs" / "teachers.gin").is_file()
  assert (pathlib.Path(cli.__file__).parent / "t5x" / "gin" / "base.gin").is_file()
