"""Every gin file the package ships parses, with the macros a user must set bound."""

import pathlib

import gin
import pytest

from mpt_jax import cli
from mpt_jax import evaluate_prompts  # pylint: disable=unused-import  (registers evaluate)
from mpt_jax import orchestration  # pylint: disable=unused-import  (registers run_pipeline)
from mpt_jax import pretraining  # pylint: disable=unused-import  (registers pretrain)
from mpt_jax import trainer  # pylint: disable=unused-import  (registers train)

GIN = cli.package_gin_dir()
REQUIRED = ["MODEL_DIR='/tmp/x'", "BACKBONE='/tmp/b'", "TEACHER_PROMPTS='/tmp/t'",
            "SOURCE_PROMPTS='/tmp/s'", "TARGET_MIXTURE='glue_mpt'", "SPOT_SOURCES='s'",
            "TARGET_TASKS=['a']", "PROMPTS='/tmp/p'", "ROOT_DIR='/tmp/r'"]
# few_shot.gin completes a method file (the next test); common.gin is included by all.
RUNS = sorted(p.name for p in (GIN / "runs").glob("*.gin")
              if p.name not in ("common.gin", "few_shot.gin"))
SIZES = sorted(p.name for p in (GIN / "models").glob("*.gin"))


def _parse(files, bindings=()):
  gin.clear_config()
  cli.guard_gin_resource_reader()
  gin.add_config_file_search_path(str(GIN))
  gin.parse_config_files_and_bindings(files, [*REQUIRED, *bindings])


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("size", SIZES + ["../smoke/synthetic.gin",
                                          "../smoke/synthetic_spm.gin"])
def test_run_files_parse_with_every_model_file(run, size):
  _parse([f"runs/{run}", f"models/{size}"])
  if run != "eval.gin":
    assert gin.query_parameter("train.model_dir") is not None


def test_few_shot_combines_with_each_method():
  for method in ("adapt.gin", "prompt_tuning.gin", "spot.gin"):
    _parse([f"runs/{method}", "runs/few_shot.gin", "smoke/synthetic.gin"])
    assert gin.query_parameter("few_shot_mixture.k") is not None


@pytest.mark.parametrize("pipeline", sorted(p.name for p in (GIN / "pipelines").glob("*.gin")))
def test_pipeline_files_parse(pipeline):
  _parse([f"pipelines/{pipeline}"])


def test_the_package_finds_its_gin_files():
  assert (GIN / "runs" / "teachers.gin").is_file()
  assert (pathlib.Path(cli.__file__).parent / "t5x" / "gin" / "base.gin").is_file()
