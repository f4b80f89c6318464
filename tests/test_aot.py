"""`python -m mpt_jax.aot`: a stage compiled for a TPU topology on this CPU, with libtpu's
compiler (the aot extra, installed by `make test`), and the errors that name the fix."""

import importlib.util
import json
import subprocess
import sys

import gin
import jax
import numpy as np
import pytest

import mpt_jax
from mpt_jax import aot
from mpt_jax import cli
from tests import helpers

needs_libtpu = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                  reason="libtpu (the aot extra) is not installed")


@needs_libtpu
@pytest.mark.xdist_group("subprocesses")
def test_the_command_compiles_a_scanned_rematted_distillation_step_for_v5e_8(
    tiny_backbone_dir):
  command = [sys.executable, "-m", "mpt_jax.aot", "--gin_file=runs/distill.gin",
             f"--backbone_config={tiny_backbone_dir}", "--topology=v5e-8", "--json",
             "--gin.BATCH_SIZE=16", "--gin.PROMPT_LENGTH=4",
             "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 4}",
             "--gin.ModelConfig.remat_policy='full'", "--gin.ModelConfig.scan_layers=True"]
  done = subprocess.run(command, cwd=helpers.ROOT, capture_output=True, text=True,
                        timeout=900, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads(done.stdout.strip().splitlines()[-1])
  assert report["target"] == "v5e-8" and report["device_kind"] == "TPU v5 lite"
  assert report["mesh"] == [8, 1]  # runs/common.gin: no model parallelism
  assert report["capacity_bytes"] == 16 * 2**30 and report["fits"] is True
  # Every device holds the whole (replicated) float32 backbone as an argument; TPU tiles
  # pad the tiny model's 32-wide dimensions to 128 lanes, up to 4 times its bytes.
  backbone = mpt_jax.load_backbone(tiny_backbone_dir)
  weights = sum(np.asarray(x).nbytes for x in jax.tree.leaves(backbone.params))
  assert weights <= report["argument_bytes"] < 5 * weights
  assert report["flops"] > 0 and report["compile_seconds"] > 0
  assert report["total_bytes"] >= report["argument_bytes"] + report["temp_bytes"] - \
      report["alias_bytes"]


@pytest.fixture
def stage_gin():
  """Parses a stage file as the command does (REQUIRED paths left unresolved)."""
  def parse(*files, bindings=()):
    gin.clear_config()
    for path in [str(cli.package_gin_dir())]:
      gin.add_config_file_search_path(path)
    gin.parse_config_files_and_bindings(list(files), list(bindings), finalize_config=False)
  yield parse
  gin.clear_config()


@needs_libtpu
def test_the_decode_step_of_an_adaptation_compiles_for_one_v5e_chip(stage_gin,
                                                                    tiny_backbone_dir):
  stage_gin("runs/adapt.gin", bindings=["TARGET_MIXTURE = 'mpt_glue_rte'",
                                        "PROMPT_LENGTH = 4", "BATCH_SIZE = 4",
                                        "TASK_FEATURE_LENGTHS = {'inputs': 8, 'targets': 3}"])
  report = aot.compile_for("v5e-1", aot.backbone_config(str(tiny_backbone_dir)), "decode")
  assert report.mesh == (1, 1) and report.fits and report.flops > 0


def test_the_backbone_shape_comes_from_the_flag_the_model_gin_file_or_a_local_backbone(
    stage_gin, tiny_backbone_dir):
  stage_gin("runs/teachers.gin", "models/t5_1_1_xxl.gin")
  assert aot.backbone_config(None) == mpt_jax.named_config("t5_1_1_xxl")
  assert aot.backbone_config("t5_1_1_base") == mpt_jax.named_config("t5_1_1_base")
  stage_gin("runs/teachers.gin", bindings=[f"BACKBONE = '{tiny_backbone_dir}'"])
  assert aot.backbone_config(None).d_model == helpers.TINY["d_model"]
  stage_gin("runs/teachers.gin", bindings=["BACKBONE = 'gs://bucket/t5/checkpoint_1'"])
  with pytest.raises(ValueError, match=r"include a models/\*\.gin file .*--backbone_config"):
    aot.backbone_config(None)


def test_unknown_targets_missing_libtpu_and_an_unset_mixture_are_refused_with_the_fix(
    stage_gin, monkeypatch):
  if importlib.util.find_spec("libtpu") is not None:
    with pytest.raises(ValueError, match=r"Unknown topology 'v9-8'.*'v5e-16'.*'v5e:4x4'"):
      aot.topology_devices("v9-8")
  stage_gin("runs/adapt.gin")
  with pytest.raises(ValueError, match=r"DataConfig.mixture_or_task_name is not set.*"
                     r"TARGET_MIXTURE"):
    aot.abstract_run(mpt_jax.named_config("t5_1_1_tiny"), [None])
  monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
  with pytest.raises(RuntimeError, match=r"pip install 'mpt_jax\[aot\]'"):
    aot.topology_devices("v5e-8")


def test_a_step_fits_when_everything_it_holds_stays_under_the_chips_memory_less_a_reserve():
  gib = 2**30
  def report(temp_gib):
    return aot.Report("v5e-8", "TPU v5 lite", (1, 8), 2 * gib, gib, gib, int(temp_gib * gib),
                      0, 1e12, 1.0)
  assert report(13).total_bytes == 15 * gib and report(13).fits  # 15 <= 16 * 0.97
  assert not report(13.6).fits
  assert aot.Report("x", "TPU v9", (1, 1), 0, 0, 0, 0, 0, 0.0, 0.0).fits is None


@needs_libtpu
def test_a_step_too_big_for_the_chip_is_refused_naming_the_memory_options(stage_gin,
                                                                          tiny_backbone_dir):
  stage_gin("runs/adapt.gin", bindings=["TARGET_MIXTURE = 'mpt_glue_rte'",
                                        "PROMPT_LENGTH = 4", "BATCH_SIZE = 4096",
                                        "TASK_FEATURE_LENGTHS = {'inputs': 2048, 'targets': 3}"])
  with pytest.raises(aot.DoesNotFit, match=r"The train step \(a bank of 2 run\(s\)\) does not "
                     r"fit v5e-1: .*HBM.*remat_policy = 'full'.*--bank_size"):
    aot.compile_for("v5e-1", aot.backbone_config(str(tiny_backbone_dir)), "train", 2)
