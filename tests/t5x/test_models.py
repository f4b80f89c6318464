"""The t5x wrapper: same loss as the built-in runtime, and `python -m t5x.train` running
the tiny teachers -> distill -> adapt gin files. t5x is not on PyPI; these tests run
where it is installed from its repository and are skipped elsewhere."""

import json
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

pytest.importorskip(
    "t5x.train", reason="t5x is not importable: it is not on PyPI; install it from "
    "github.com/google-research/t5x to run the t5x adapter's tests.")

# pylint: disable=g-import-not-at-top
import seqio
from t5x import adafactor

import mpt_jax
from mpt_jax.backbone import t5x_checkpoint
from mpt_jax.model import models
from mpt_jax.model.decoding import DecodingConfig
from mpt_jax.prompts import factories
from mpt_jax.prompts import modules as prompts
from mpt_jax.t5x import models as t5x_wrapper
from tests import helpers
from tests.helpers import FIXTURES

ROOT = helpers.ROOT


def _batch(reference):
  return helpers.toy_batch(reference, task_ids=(1, 0, 2))


@pytest.mark.parametrize("distill", [False, True])
def test_wrapper_and_builtin_runtime_give_the_same_loss(reference, distill):
  backbone = mpt_jax.load_backbone(FIXTURES / "hf_t5_1_1")
  d = backbone.config.d_model
  random = jax.nn.initializers.normal(1.0)
  student = prompts.DecomposedPrompt(3, 4, d, shared_init=random, cols_init=random,
                                     rows_init=random)
  teacher = prompts.PromptBank(3, 4, d, initializer=random) if distill else None
  model_cls = models.DistillationModel if distill else models.PromptTuningModel
  mpt = model_cls(backbone.config, student, teacher_prompt=teacher)
  wrapper = t5x_wrapper.MptEncoderDecoderModel(
      mpt, seqio.ByteVocabulary(), seqio.ByteVocabulary(), adafactor.Adafactor())
  batch = _batch(reference)
  shapes = {k: v.shape for k, v in batch.items()}
  variables = wrapper.get_initial_variables(jax.random.PRNGKey(0), shapes)
  params = {**variables["params"], **backbone.params}
  builtin_loss, builtin_metrics = mpt.loss_fn(params, batch)
  t5x_loss, t5x_metrics = wrapper.loss_fn(params, batch, None)
  np.testing.assert_allclose(float(t5x_loss), float(builtin_loss), rtol=1e-6)
  assert set(t5x_metrics) == set(builtin_metrics)
  scores = wrapper.score_batch(params, batch)
  np.testing.assert_allclose(scores, mpt.score_batch(params, batch), rtol=1e-6)
  # The task ids reach the prompt: another assignment gives another loss.
  other = {**batch, "task_ids": np.array([2, 2, 0], np.int32)}
  assert abs(float(wrapper.loss_fn(params, other, None)[0]) - float(t5x_loss)) > 1e-4


def test_the_wrappers_decoding_is_mpt_jaxs_greedy_or_beam_search(reference):
  backbone = mpt_jax.load_backbone(FIXTURES / "hf_t5_1_1")
  adapter = mpt_jax.load_prompts(FIXTURES / "peft_mpt_r1")
  mpt = models.PromptTuningModel(backbone.config.replace(dropout_rate=0.0),
                                 factories.module_for(adapter))
  wrapper = t5x_wrapper.MptEncoderDecoderModel(
      mpt, seqio.ByteVocabulary(), seqio.ByteVocabulary(), adafactor.Adafactor())
  batch = _batch(reference)
  variables = wrapper.get_initial_variables(jax.random.PRNGKey(0),
                                            {k: v.shape for k, v in batch.items()})
  params = {**variables["params"], **backbone.params}
  for beams in (1, 3):
    tokens, aux = wrapper.predict_batch_with_aux(params, batch, num_decodes=beams,
                                                 decoder_params={"alpha": 0.0})
    expected, expected_aux = mpt.predict_batch_with_aux(
        params, batch, batch["decoder_input_tokens"].shape[1],
        decoding_config=DecodingConfig(beam_size=beams, alpha=0.0))
    np.testing.assert_array_equal(np.asarray(tokens), np.asarray(expected))
    np.testing.assert_allclose(aux["scores"], expected_aux["scores"], rtol=1e-6)
    assert np.all(np.asarray(aux["scores"]) < 0)
  with pytest.raises(ValueError, match="returns the best decode only"):
    wrapper.predict_batch_with_aux(params, batch, num_decodes=2, return_all_decodes=True)


def _t5x_train(stage, model_dir, backbone_ckpt, mixture, *bindings):
  command = [sys.executable, "-m", "t5x.train", f"--gin_file=mpt_jax/t5x/gin/{stage}.gin",
             "--gin_file=mpt_jax/t5x/gin/tiny.gin", f"--gin.MODEL_DIR='{model_dir}'",
             f"--gin.BASE_MIXTURE='{mixture}'", "--gin.TASK_MODULES=['tests.toy_tasks']",
             f"--gin.INITIAL_CHECKPOINT_PATH='{backbone_ckpt}'",
             "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 4}",
             "--gin.TRAIN_STEPS=7", "--gin.BATCH_SIZE=8", "--gin.EVAL_PERIOD=3",
             "--gin.utils.SaveCheckpointConfig.period=3", *bindings]
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                               "TF_CPP_MIN_LOG_LEVEL": "2"})
  assert result.returncode == 0, result.stderr[-4000:]


def _prompt_params(checkpoint):
  flat = t5x_checkpoint.read_t5x_params(checkpoint)
  return {k.split("/", 1)[1]: v for k, v in flat.items() if k.startswith("prompt/")}


@pytest.fixture(scope="module")
def t5x_runs(tmp_path_factory):
  """teachers -> distill -> adapt, 7 steps each, under `python -m t5x.train`."""
  tmp_path = tmp_path_factory.mktemp("t5x_runs")
  backbone = mpt_jax.random_backbone(mpt_jax.named_config("t5_1_1_tiny", **helpers.TINY))
  checkpoint = backbone.save_t5x(tmp_path / "backbone")
  runs = {name: tmp_path / name for name in ("teachers", "distill", "adapt")}
  for stage, run in runs.items():
    _t5x_train(stage, run, checkpoint, STAGE_MIXTURES[stage], *_stage_bindings(stage, runs))
  return checkpoint, runs


def _stage_bindings(stage, runs):
  return {"teachers": [],
          "distill": [f"--gin.TEACHER_PROMPTS='{runs['teachers'] / 'prompts.safetensors'}'"],
          "adapt": [f"--gin.SOURCE_PROMPTS='{runs['distill'] / 'prompts.safetensors'}'"]}[stage]


STAGE_MIXTURES = {"teachers": "toy_mix", "distill": "toy_mix", "adapt": "toy_targets"}


@pytest.mark.xdist_group("t5x")
def test_t5x_train_runs_teachers_distill_adapt(t5x_runs):
  checkpoint, runs = t5x_runs
  for name, kind in (("teachers", "bank"), ("distill", "decomposed"), ("adapt", "decomposed")):
    run = runs[name]
    final = mpt_jax.load_prompts(run / "prompts.safetensors")
    assert final.kind == kind and final.metadata["step"] == 7
    assert (run / "prompts" / "step_4.safetensors").is_file()
    # The backbone is restored and never changes; the prompt does.
    trained = t5x_checkpoint.read_t5x_params(run / "checkpoint_7")
    for key, value in t5x_checkpoint.read_t5x_params(checkpoint).items():
      np.testing.assert_array_equal(trained[key], value, err_msg=f"{name}: {key}")
    initial = _prompt_params(run / "checkpoint_1")
    assert any(not np.allclose(initial[k], final.arrays[k]) for k in initial), name

  distilled = mpt_jax.load_prompts(runs["distill"] / "prompts.safetensors")
  adapt_start = _prompt_params(runs["adapt"] / "checkpoint_1")
  for task in range(2):
    np.testing.assert_allclose(adapt_start[prompts.SHARED][task],
                               distilled.arrays[prompts.SHARED], rtol=1e-6)
    for name in (prompts.TASK_COLS, prompts.TASK_ROWS):
      np.testing.assert_allclose(adapt_start[name][task],
                                 distilled.arrays[name].mean(axis=0), rtol=1e-6)
  assert mpt_jax.load_prompts(runs["adapt"] / "prompts.safetensors").task_names == (
      "toy_first", "toy_vowel")


@pytest.mark.xdist_group("t5x")
@pytest.mark.parametrize("stage", ["teachers", "distill", "adapt"])
def test_every_t5x_stage_resumes_its_prompt_under_orbax_checkpointing(t5x_runs, stage,
                                                                        tmp_path):
  checkpoint, runs = t5x_runs
  run = tmp_path / stage
  shutil.copytree(runs[stage], run)
  # Two more steps at learning rate 0: a resumed prompt stays the step-7 one; one that a
  # resume reinitialised (or failed to read) would not.
  _t5x_train(stage, run, checkpoint, STAGE_MIXTURES[stage], *_stage_bindings(stage, runs),
             "--gin.TRAIN_STEPS=9", "--gin.utils.create_learning_rate_scheduler."
             "base_learning_rate=0.0")
  resumed, saved, initial = (_prompt_params(run / f"checkpoint_{step}") for step in (9, 7, 1))
  for name in saved:
    np.testing.assert_allclose(resumed[name], saved[name], atol=1e-6, err_msg=name)
  assert any(not np.allclose(resumed[name], initial[name]) for name in saved)


@pytest.mark.xdist_group("t5x")
def test_t5x_eval_runs_with_the_shipped_gin_on_a_stage_checkpoint(t5x_runs, tmp_path):
  _, runs = t5x_runs
  command = [sys.executable, "-m", "t5x.eval", "--gin_file=mpt_jax/t5x/gin/eval.gin",
             "--gin_file=mpt_jax/t5x/gin/tiny.gin", "--gin.BASE_MIXTURE='toy_targets'",
             "--gin.TASK_MODULES=['tests.toy_tasks']",
             f"--gin.PROMPTS='{runs['adapt'] / 'prompts.safetensors'}'",
             f"--gin.CHECKPOINT_PATH='{runs['adapt'] / 'checkpoint_7'}'",
             f"--gin.EVAL_OUTPUT_DIR='{tmp_path}'",
             "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 4}",
             "--gin.utils.DatasetConfig.split='validation'",
             "--gin.utils.DatasetConfig.batch_size=8"]
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
  assert result.returncode == 0, result.stderr[-4000:]
  for task_id, task in enumerate(("toy_first", "toy_vowel")):
    stem = tmp_path / "inference_eval" / f"{task}_with_task_id_{task_id}"
    metrics = [json.loads(line) for line in
               pathlib.Path(f"{stem}-metrics.jsonl").read_text().splitlines()]
    assert metrics and all(m["step"] == 7 and "accuracy" in m for m in metrics)
    predictions = pathlib.Path(f"{stem}-000007.jsonl").read_text().splitlines()
    assert len(predictions) == 16  # the toy tasks' validation split
    assert all(json.loads(p)["input"]["task_ids"] == [task_id] for p in predictions)


@pytest.mark.xdist_group("t5x")
def test_a_saved_prompt_for_other_tasks_is_refused(t5x_runs):
  _, runs = t5x_runs
  with pytest.raises(ValueError, match=r"holds the prompts of tasks \['toy_first', "
                                       r"'toy_vowel'\]; this run's tasks are \['toy_mix'\]"):
    factories.saved_prompt(None, ["toy_mix"], path=runs["adapt"] / "prompts.safetensors")
