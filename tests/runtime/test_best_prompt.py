"""Dev evaluation in training: eval tasks checked, the best prompt kept only on improvement."""

import json
import re

import jax
import numpy as np
import pytest

import mpt_jax
from mpt_jax.model import models
from mpt_jax.prompts import modules as prompts
from mpt_jax.runtime import best_prompt
from mpt_jax.runtime import evaluation
from mpt_jax.runtime import setup as setup_lib
from mpt_jax.runtime.configs import EvalConfig
from mpt_jax.runtime.configs import ModelConfig
from mpt_jax.runtime.model_dir import ModelDir
from mpt_jax.runtime.partitioning import Partitioner
from tests import helpers

TASKS = ["toy_vowel", "toy_first", "toy_upper"]


class _ScriptedEvaluator:
  """Stands in for TaskEvaluator: records how it was built, returns scripted results.
  Its rows are the reference batch's, once to decode and once to score."""
  rows = None  # set by the `scripted` fixture

  def __init__(self, task_ids, split, feature_lengths, batch_size, *,
               rank_classification=False, num_examples=None, data=None):
    del data
    self.built = dict(task_ids=dict(task_ids), split=split, batch_size=batch_size,
                      feature_lengths=dict(feature_lengths),
                      rank_classification=rank_classification, num_examples=num_examples)
    self.batch_size, self.labels_per_example = 3, 1
    self.script = []
    self.calls = []  # (predictions, scores, step) of each evaluation

  def decode_chunks(self):
    yield evaluation._Chunk("toy_vowel", [0, 1, 2], self.rows)  # pylint: disable=protected-access

  def score_chunks(self):
    yield evaluation._Chunk("toy_vowel", [0, 1, 2], self.rows)  # pylint: disable=protected-access

  def results(self, predictions, scores, step=None):
    self.calls.append((predictions, scores, step))
    return self.script.pop(0)


@pytest.fixture
def scripted(monkeypatch, reference):
  monkeypatch.setattr(evaluation, "TaskEvaluator", _ScriptedEvaluator)
  monkeypatch.setattr(_ScriptedEvaluator, "rows", helpers.toy_batch(reference))


@pytest.fixture(name="setup", scope="module")
def run_setup(hf_t5_1_1):
  module = prompts.PromptBank(3, 4, hf_t5_1_1.config.d_model,
                              initializer=jax.nn.initializers.normal(1.0))
  return setup_lib.build_setup(hf_t5_1_1, TASKS, module, ModelConfig(), Partitioner())


class _Solo:
  """One run's dev evaluation, called as its bank of one is."""

  def __init__(self, setup, path, **config):
    self.run = best_prompt.RunDevEvaluation(setup, ModelDir(path),
                                            EvalConfig(period=5, **config),
                                            helpers.TOY_LENGTHS, default_batch_size=8)
    self.bank = best_prompt.DevEvaluation([self.run], helpers.TOY_LENGTHS["targets"])
    self.evaluator = self.run.evaluator

  def __call__(self, trainable, step):
    return self.bank([trainable], step)[0]

  def close(self):
    self.bank.close()


def _dev(setup, path, **config):
  return _Solo(setup, path, **config)


def _prompt(setup, shift):
  return jax.tree.map(lambda x: x + shift, setup.initial_prompt)


def _results(vowel, first):
  return {"toy_vowel": {"accuracy": vowel}, "toy_first": {"accuracy": first}}


def _saved(path):
  return mpt_jax.load_prompts(path / "best" / "prompts.safetensors")


def test_eval_tasks_outside_the_runs_tasks_are_refused(setup, tmp_path, scripted):
  with pytest.raises(ValueError, match=re.escape(
      "Eval tasks ['nope', 'toy_mix'] are not among the run's tasks ['toy_vowel', "
      "'toy_first', 'toy_upper']; the prompt has no task id for them.")):
    _dev(setup, tmp_path, tasks=["toy_first", "toy_mix", "nope"])


def test_the_evaluator_gets_each_eval_task_under_its_run_task_id(setup, tmp_path, scripted):
  dev = _dev(setup, tmp_path, tasks=["toy_upper", "toy_vowel"], split="test",
             rank_classification=True, num_examples=6)
  assert dev.evaluator.built == dict(
      task_ids={"toy_upper": 2, "toy_vowel": 0}, split="test", batch_size=8,
      feature_lengths=helpers.TOY_LENGTHS, rank_classification=True, num_examples=6)
  assert _dev(setup, tmp_path, batch_size=3).evaluator.built["task_ids"] == {
      "toy_vowel": 0, "toy_first": 1, "toy_upper": 2}
  assert _dev(setup, tmp_path, batch_size=3).evaluator.built["batch_size"] == 3


def test_building_it_writes_nothing_to_the_model_dir(setup, tmp_path, scripted):
  (tmp_path / "run").mkdir()
  dev = _dev(setup, tmp_path / "run")
  _dev(setup, tmp_path / "absent")
  assert list((tmp_path / "run").iterdir()) == []
  assert not (tmp_path / "absent").exists()
  dev.close()  # closing an unused one writes nothing either
  assert list((tmp_path / "run").iterdir()) == []


def test_the_best_prompt_is_written_only_when_the_average_improves(setup, tmp_path, scripted):
  dev = _dev(setup, tmp_path)
  dev.evaluator.script = [_results(40.0, 60.0), _results(30.0, 50.0), _results(50.0, 50.0),
                          _results(90.0, 70.0)]
  first, worse, equal, better = (_prompt(setup, s) for s in (1.0, 2.0, 3.0, 4.0))
  assert dev(first, 10) == _results(40.0, 60.0)
  best = json.loads((tmp_path / "best.json").read_text())
  assert best == {"step": 10, "metric": "average", "value": 50.0,
                  "results": _results(40.0, 60.0)}
  for trainable, step in ((worse, 20), (equal, 30)):
    dev(trainable, step)
    assert json.loads((tmp_path / "best.json").read_text()) == best
    saved = _saved(tmp_path)
    assert saved.metadata["step"] == 10
    np.testing.assert_array_equal(saved.arrays["prompts"], first["prompt"]["prompts"])
  dev(better, 40)
  best = json.loads((tmp_path / "best.json").read_text())
  assert (best["step"], best["value"]) == (40, 80.0)
  saved = _saved(tmp_path)
  assert saved.metadata["step"] == 40 and saved.metadata["best"] == "average"
  assert saved.task_names == tuple(TASKS)
  np.testing.assert_array_equal(saved.arrays["prompts"], better["prompt"]["prompts"])
  dev.close()
  logged = helpers.logged(tmp_path, "eval")
  assert [row["step"] for row in logged] == [10, 20, 30, 40]
  assert logged[1] == {"step": 20, "toy_vowel/accuracy": 30.0, "toy_first/accuracy": 50.0,
                       "average": 40.0}


def test_a_task_metric_picks_the_best_prompt_by_that_metric_alone(setup, tmp_path, scripted):
  dev = _dev(setup, tmp_path, best_metric="toy_first/accuracy")
  dev.evaluator.script = [_results(10.0, 50.0), _results(90.0, 40.0), _results(0.0, 60.0)]
  dev(_prompt(setup, 1.0), 1)
  dev(_prompt(setup, 2.0), 2)  # the average rises, toy_first falls: not the best
  best = json.loads((tmp_path / "best.json").read_text())
  assert (best["step"], best["metric"], best["value"]) == (1, "toy_first/accuracy", 50.0)
  dev(_prompt(setup, 3.0), 3)
  best = json.loads((tmp_path / "best.json").read_text())
  assert (best["step"], best["value"]) == (3, 60.0)
  assert _saved(tmp_path).metadata["best"] == "toy_first/accuracy"
  dev.close()


def test_a_best_metric_not_among_the_results_is_refused(setup, tmp_path, scripted):
  dev = _dev(setup, tmp_path, best_metric="toy_first/bleu")
  dev.evaluator.script = [_results(10.0, 50.0)]
  expected = ("best_metric 'toy_first/bleu' is not among the eval results "
              "{'toy_vowel': ['accuracy'], 'toy_first': ['accuracy']}.")
  with pytest.raises(ValueError, match=re.escape(expected)):
    dev(_prompt(setup, 1.0), 5)
  assert not (tmp_path / "best.json").exists() and not (tmp_path / "best").exists()


@pytest.mark.parametrize("metric", ["toy_nope/accuracy", "accuracy", "toy_first/"])
def test_a_best_metric_without_an_evaluated_task_is_refused_before_training(
    setup, tmp_path, metric):
  with pytest.raises(ValueError, match=re.escape(
      f"EvalConfig.best_metric {metric!r} must be 'average' or 'task/metric'")):
    _dev(setup, tmp_path, best_metric=metric)
  assert not any(tmp_path.iterdir())


def test_a_resumed_run_keeps_the_best_it_had(setup, tmp_path, scripted):
  (tmp_path / "best.json").write_text(json.dumps(
      {"step": 10, "metric": "average", "value": 70.0, "results": _results(70.0, 70.0)}))
  dev = _dev(setup, tmp_path)
  dev.evaluator.script = [_results(60.0, 60.0), _results(80.0, 80.0)]
  dev(_prompt(setup, 1.0), 20)
  assert json.loads((tmp_path / "best.json").read_text())["step"] == 10
  assert not (tmp_path / "best").exists()
  dev(_prompt(setup, 2.0), 30)
  assert json.loads((tmp_path / "best.json").read_text())["step"] == 30
  assert _saved(tmp_path).metadata["step"] == 30
  dev.close()


def test_the_evaluator_scores_the_prompt_it_is_called_with(setup, tmp_path, scripted,
                                                           reference):
  dev = _dev(setup, tmp_path)
  dev.evaluator.script = [_results(1.0, 1.0)]
  trainable = _prompt(setup, 0.5)
  dev(trainable, 7)
  dev.close()
  predictions, scores, step = dev.evaluator.calls[0]
  assert step == 7
  batch = helpers.toy_batch(reference)
  params = models.merge(trainable, setup.frozen)
  direct_scores = jax.jit(setup.model.score_batch)(params, batch)
  np.testing.assert_allclose([s for _, s in scores["toy_vowel"]], direct_scores, rtol=1e-5)
  direct = jax.jit(lambda p, b: setup.model.predict_batch(p, b, 4))(params, batch)
  assert [i for i, _ in predictions["toy_vowel"]] == [0, 1, 2]
  np.testing.assert_array_equal([t for _, t in predictions["toy_vowel"]], direct)


def test_a_bank_keeps_each_runs_best_prompt_in_its_own_directory(setup, tmp_path, scripted):
  runs = [best_prompt.RunDevEvaluation(setup, ModelDir(tmp_path / name),
                                       EvalConfig(period=5), helpers.TOY_LENGTHS, 8)
          for name in ("a", "b")]
  bank = best_prompt.DevEvaluation(runs, helpers.TOY_LENGTHS["targets"])
  runs[0].evaluator.script = [_results(40.0, 40.0), _results(60.0, 60.0)]
  runs[1].evaluator.script = [_results(90.0, 90.0), _results(10.0, 10.0)]
  prompts_a = [_prompt(setup, 1.0), _prompt(setup, 2.0)]
  prompts_b = [_prompt(setup, 3.0), _prompt(setup, 4.0)]
  for step, (a, b) in zip((5, 10), zip(prompts_a, prompts_b)):
    assert set(bank([a, b], step)) == {0, 1}
  assert json.loads((tmp_path / "a" / "best.json").read_text())["step"] == 10
  assert json.loads((tmp_path / "b" / "best.json").read_text())["step"] == 5
  np.testing.assert_array_equal(_saved(tmp_path / "a").arrays["prompts"],
                                prompts_a[1]["prompt"]["prompts"])
  np.testing.assert_array_equal(_saved(tmp_path / "b").arrays["prompts"],
                                prompts_b[0]["prompt"]["prompts"])
  # Only the runs named active are evaluated (a failed run is left out).
  runs[1].evaluator.script = [_results(1.0, 1.0)]
  assert set(bank([prompts_a[0], prompts_b[0]], 15, active=[1])) == {1}
  bank.close()
  assert [row["step"] for row in helpers.logged(tmp_path / "a", "eval")] == [5, 10]
  assert [row["step"] for row in helpers.logged(tmp_path / "b", "eval")] == [5, 10, 15]


def test_the_runs_of_a_bank_evaluate_at_the_same_steps(setup, tmp_path):
  runs = [best_prompt.RunDevEvaluation(setup, ModelDir(tmp_path / str(period)),
                                       EvalConfig(period=period), helpers.TOY_LENGTHS, 8)
          for period in (5, 10)]
  with pytest.raises(ValueError, match=re.escape(
      "The runs of a bank evaluate at the same steps; their EvalConfig.period differ: "
      "[5, 10].")):
    best_prompt.DevEvaluation(runs, helpers.TOY_LENGTHS["targets"])


def test_a_real_evaluation_keeps_its_scores_in_best_json(tmp_path, tiny_backbone_dir):
  backbone = mpt_jax.load_backbone(tiny_backbone_dir)
  module = prompts.PromptBank(3, 4, backbone.config.d_model)
  setup = setup_lib.build_setup(backbone, TASKS, module, ModelConfig(), Partitioner())
  dev = _dev(setup, tmp_path, tasks=["toy_first"], rank_classification=True)
  results = dev(setup.initial_prompt, 3)
  dev.close()
  # The same prompt evaluated directly, as toy_first's id (1) in the run.
  predict, score = evaluation.bank_eval_fns(setup, helpers.TOY_LENGTHS["targets"])
  direct = evaluation.TaskEvaluator({"toy_first": 1}, "validation", helpers.TOY_LENGTHS, 8)
  alone = [setup.initial_prompt]
  assert results == direct.evaluate(lambda b: predict(alone, b), lambda b: score(alone, b))
  best = json.loads((tmp_path / "best.json").read_text())
  assert best == {"step": 3, "metric": "average", "value": results["toy_first"]["accuracy"],
                  "results": results}
  np.testing.assert_array_equal(_saved(tmp_path).arrays["prompts"],
                                setup.initial_prompt["prompt"]["prompts"])
  assert helpers.logged(tmp_path, "eval") == [
      {"step": 3, "toy_first/accuracy": results["toy_first"]["accuracy"],
       "average": results["toy_first"]["accuracy"]}]
