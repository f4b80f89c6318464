"""`evaluate()`: saved prompts (a run, a file, several runs) scored on their tasks'
splits with the same run setup as training."""

import json

import pytest

from mpt_jax import eval as eval_lib
from mpt_jax.prompts.loading import BackboneMismatchError
from mpt_jax.runtime.configs import EvalConfig
from tests import helpers

LENGTHS = helpers.TOY_LENGTHS


@pytest.fixture(name="trained")
def trained_toy_run(toy_run):
  return toy_run


def test_the_saved_best_prompt_reproduces_the_training_eval(trained, tiny_backbone_dir,
                                                             tmp_path):
  model_dir, result = trained
  summary = eval_lib.evaluate(
      str(tmp_path), prompts=str(model_dir), backbone=str(tiny_backbone_dir),
      task_feature_lengths=LENGTHS, splits=("validation",),
      evaluation=EvalConfig(batch_size=8, rank_classification=True))
  assert summary["prompts"].endswith("best/prompts.safetensors")
  assert summary["results"]["validation"] == result.metrics["eval"]
  written = json.loads((tmp_path / "results.json").read_text())
  assert written["results"]["validation"] == result.metrics["eval"]


def test_several_runs_are_evaluated_into_each_runs_eval_folder(trained, tiny_backbone_dir,
                                                              tmp_path):
  model_dir, _ = trained
  second = tmp_path / "second"
  helpers.train_toy(second, tiny_backbone_dir, mixture="toy_targets", train_steps=2)
  summaries = eval_lib.evaluate(
      prompts=[str(model_dir), str(second)], backbone=str(tiny_backbone_dir),
      task_feature_lengths=LENGTHS, splits=("validation",),
      evaluation=EvalConfig(batch_size=8, tasks=None, num_examples=4))
  assert [set(s["results"]["validation"]) for s in summaries] == [
      {"toy_first", "toy_upper", "toy_vowel"}, {"toy_first", "toy_vowel"}]
  written = json.loads((second / "eval" / "results.json").read_text())
  assert written == summaries[1]
  assert summaries[1]["prompts"].endswith("second/prompts.safetensors")  # it kept no best
  with pytest.raises(ValueError, match="leave MODEL_DIR unset"):
    eval_lib.evaluate(str(tmp_path), prompts=[str(second)], backbone=str(tiny_backbone_dir),
                      task_feature_lengths=LENGTHS)


def test_prompts_of_another_backbone_are_refused_before_any_scoring(trained, tmp_path):
  model_dir, _ = trained
  other = helpers.write_tiny_backbone(tmp_path / "other", seed=1)
  with pytest.raises(BackboneMismatchError, match=r"best/prompts.safetensors were trained on"):
    eval_lib.evaluate(str(tmp_path / "eval"), prompts=str(model_dir), backbone=str(other),
                      task_feature_lengths=LENGTHS, splits=("validation",))
  assert not (tmp_path / "eval").exists()


def test_missing_prompts_are_named(tmp_path, tiny_backbone_dir):
  with pytest.raises(FileNotFoundError, match="Prompts .*nowhere do not exist"):
    eval_lib.evaluate(str(tmp_path), prompts=str(tmp_path / "nowhere"),
                      backbone=str(tiny_backbone_dir), task_feature_lengths=LENGTHS)


def test_the_backbone_is_placed_once_for_several_prompts(trained, tiny_backbone_dir,
                                                         monkeypatch):
  model_dir, _ = trained
  calls = []
  place = eval_lib.setup_lib.place_backbone
  monkeypatch.setattr(eval_lib.setup_lib, "place_backbone",
                      lambda *args: calls.append(args) or place(*args))
  summaries = eval_lib.evaluate(
      prompts=[str(model_dir), str(model_dir)], backbone=str(tiny_backbone_dir),
      task_feature_lengths=LENGTHS, splits=("validation",),
      evaluation=EvalConfig(batch_size=8, num_examples=4))
  assert len(calls) == 1
  assert summaries[0]["results"] == summaries[1]["results"]
