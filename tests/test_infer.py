"""`infer()`: predictions of saved prompts on task splits and on files of inputs, in
input order, agreeing with seqio's evaluation; resumed after an interruption without a
line lost or repeated, and refused when the inputs or settings changed."""

import json

import gin
import numpy as np
import pytest

from mpt_jax import eval as eval_lib
from mpt_jax import infer as infer_lib
from mpt_jax.model.decoding import DecodingConfig
from mpt_jax.runtime.configs import EvalConfig
from tests import helpers
from tests import toy_tasks

LENGTHS = helpers.TOY_LENGTHS
RUN_TASKS = ("toy_first", "toy_upper", "toy_vowel")  # toy_mix's tasks, in task-id order


def _infer(toy_run, backbone, output, **kwargs):
  model_dir, _ = toy_run
  kwargs.setdefault("batch_size", 8)
  return infer_lib.infer(str(output), prompts=str(model_dir), backbone=str(backbone),
                         task_feature_lengths=LENGTHS, **kwargs)


def _lines(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(name="split_predictions", scope="module")
def split_predictions_fixture(toy_run, tiny_backbone_dir, tmp_path_factory):
  output = tmp_path_factory.mktemp("infer") / "validation.jsonl"
  summary = _infer(toy_run, tiny_backbone_dir, output)
  return output, summary


def test_a_split_is_predicted_in_order_with_targets_and_scores(split_predictions):
  output, summary = split_predictions
  rows = _lines(output)
  assert summary == {"output": str(output), "examples": 48, "resumed": 0,
                     "seconds": summary["seconds"]}
  assert [r["index"] for r in rows] == list(range(48))
  assert [r["task"] for r in rows] == [t for t in RUN_TASKS for _ in range(16)]
  expected = [pair for task in RUN_TASKS for pair in toy_tasks._examples(
      task, "validation")]  # pylint: disable=protected-access
  assert [(r["inputs"], r["targets"]) for r in rows] == expected
  assert all(r["score"] < 0 and np.isfinite(r["score"]) for r in rows)


def test_split_predictions_score_as_seqios_evaluation_does(split_predictions, toy_run,
                                                            tiny_backbone_dir):
  """Accuracy recomputed from the written lines equals mpt_jax.eval's greedy accuracy."""
  output, _ = split_predictions
  model_dir, _ = toy_run
  evaluated = eval_lib.evaluate(prompts=str(model_dir), backbone=str(tiny_backbone_dir),
                                task_feature_lengths=LENGTHS, splits=("validation",),
                                evaluation=EvalConfig(batch_size=8))
  rows = _lines(output)
  for task in RUN_TASKS:
    mine = [r["prediction"] == r["targets"] for r in rows if r["task"] == task]
    assert 100 * np.mean(mine) == pytest.approx(
        evaluated["results"]["validation"][task]["accuracy"])


def test_a_jsonl_file_mixing_tasks_gets_each_inputs_split_prediction(
    split_predictions, toy_run, tiny_backbone_dir, tmp_path):
  by_input = {(r["task"], r["inputs"]): r for r in _lines(split_predictions[0])}
  chosen = list(by_input)[::5]
  order = np.random.default_rng(0).permutation(len(chosen))
  inputs = tmp_path / "inputs.jsonl"
  inputs.write_text("".join(json.dumps({"task": chosen[i][0], "inputs": chosen[i][1]}) + "\n"
                            for i in order))
  output = tmp_path / "out.jsonl"
  _infer(toy_run, tiny_backbone_dir, output, inputs=str(inputs), batch_size=4)
  rows = _lines(output)
  assert len(rows) == len(chosen) and len({r["task"] for r in rows[:4]}) > 1
  for row, i in zip(rows, order):
    expected = by_input[chosen[i]]
    assert (row["task"], row["inputs"]) == chosen[i] and "targets" not in row
    assert row["prediction"] == expected["prediction"]
    assert row["score"] == pytest.approx(expected["score"], abs=1e-4)


def test_a_text_file_takes_its_task_from_infer_tasks(toy_run, tiny_backbone_dir, tmp_path):
  inputs = tmp_path / "inputs.txt"
  inputs.write_text("first: apple\n\nfirst: tiger\n")
  output = tmp_path / "out.jsonl"
  _infer(toy_run, tiny_backbone_dir, output, inputs=str(inputs), tasks="toy_first")
  assert [(r["index"], r["task"], r["inputs"]) for r in _lines(output)] == [
      (0, "toy_first", "first: apple"), (1, "toy_first", "first: tiger")]


@pytest.mark.parametrize("content, message", [
    ('{"inputs": "first: apple", "task": "toy_first"}\nnot json\n',
     r"inputs.jsonl:2: expected a JSON object with an 'inputs' string"),
    ('{"inputs": "first: apple", "task": "toy_frist"}\n',
     r"inputs.jsonl:1: unknown task 'toy_frist'; the prompts hold \['toy_first', "
     r"'toy_upper', 'toy_vowel'\]. Did you mean toy_first\?"),
    ('{"inputs": "first: apple"}\n', r"inputs.jsonl:1 names no task.*infer.tasks"),
    ("", r"holds no inputs"),
])
def test_bad_input_lines_are_refused_by_file_and_line_before_anything_is_written(
    toy_run, tiny_backbone_dir, tmp_path, content, message):
  inputs = tmp_path / "inputs.jsonl"
  inputs.write_text(content)
  with pytest.raises(ValueError, match=message):
    _infer(toy_run, tiny_backbone_dir, tmp_path / "out.jsonl", inputs=str(inputs))
  assert not (tmp_path / "out.jsonl").exists()


def test_an_interrupted_output_is_continued_to_the_uninterrupted_one(
    split_predictions, toy_run, tiny_backbone_dir, tmp_path, caplog):
  complete = split_predictions[0].read_text()
  lines = complete.splitlines(keepends=True)
  output = tmp_path / "validation.jsonl"
  (tmp_path / "validation.jsonl.settings.json").write_text(
      (split_predictions[0].parent / "validation.jsonl.settings.json").read_text())
  # 19 whole lines and half of the 20th: the partly written third batch is dropped.
  output.write_text("".join(lines[:19]) + lines[19][:30])
  with caplog.at_level("INFO"):
    summary = _infer(toy_run, tiny_backbone_dir, output)
  assert summary["resumed"] == 16
  assert "16 of 48 inputs already predicted" in caplog.text
  assert output.read_text() == complete
  assert _infer(toy_run, tiny_backbone_dir, output)["resumed"] == 48  # nothing left to do
  assert output.read_text() == complete


def test_continuing_with_other_settings_or_inputs_is_refused_and_changes_nothing(
    split_predictions, toy_run, tiny_backbone_dir, tmp_path):
  output = tmp_path / "validation.jsonl"
  settings = tmp_path / "validation.jsonl.settings.json"
  output.write_text("".join(split_predictions[0].read_text().splitlines(keepends=True)[:8]))
  settings.write_text((split_predictions[0].parent / settings.name).read_text())
  before = output.read_bytes(), settings.read_bytes()
  with gin.unlock_config():
    gin.bind_parameter("DecodingConfig.beam_size", 3)
  try:
    with pytest.raises(ValueError, match=r"other settings \(decoding\)\. Write to another "
                                         r"OUTPUT, or delete"):
      _infer(toy_run, tiny_backbone_dir, output)
  finally:
    gin.clear_config()
  assert (output.read_bytes(), settings.read_bytes()) == before
  with pytest.raises(ValueError, match=r"validation.jsonl:1 is not the prediction of input 0 "
                                       r"\(toy_upper: 'upper: "):
    _infer(toy_run, tiny_backbone_dir, output, tasks=["toy_upper"])
  assert (output.read_bytes(), settings.read_bytes()) == before


def test_beam_search_and_sampling_are_chosen_by_gin(toy_run, tiny_backbone_dir, tmp_path):
  for name, binding in (("beam", ("DecodingConfig.beam_size", 4)),
                        ("sample", ("DecodingConfig.temperature", 1.0))):
    with gin.unlock_config():
      gin.bind_parameter(*binding)
    try:
      output = tmp_path / f"{name}.jsonl"
      _infer(toy_run, tiny_backbone_dir, output, tasks="toy_upper")
      settings = json.loads((tmp_path / f"{name}.jsonl.settings.json").read_text())
      assert settings["decoding"] == {**vars(DecodingConfig()), binding[0].split(".")[1]:
                                      binding[1]}
    finally:
      gin.clear_config()
    assert len(_lines(output)) == 16
