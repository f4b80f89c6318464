"""`train()` on one device: the loss falls, the backbone stays frozen, the run's files,
evaluation with the best prompt kept, resuming (past a damaged checkpoint too), and the
failures it reports before touching MODEL_DIR."""

import json
import shutil

import gin
import numpy as np
import pytest

import mpt_jax
from mpt_jax import train as train_lib
from mpt_jax.prompts import factories
from mpt_jax.prompts.loading import BackboneMismatchError
from mpt_jax.runtime import checkpoints
from mpt_jax.runtime import optimizers
from tests import faults
from tests import helpers


@pytest.fixture(name="trained")
def trained_toy_run(toy_run):
  return toy_run


def test_loss_falls(trained):
  model_dir, _ = trained
  losses = [row["loss"] for row in helpers.logged(model_dir)]
  assert len(losses) == 30
  assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5


def test_backbone_is_bit_identical_after_training(trained, tiny_backbone_dir):
  _, result = trained
  original = mpt_jax.load_backbone(tiny_backbone_dir)
  frozen = {k: v for k, v in result.setup.frozen.items() if k != "teacher_prompt"}
  on_device = mpt_jax.Backbone(original.config, _host(frozen))
  assert on_device.fingerprint == original.fingerprint


def _host(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.map(np.asarray, jax.device_get(tree))


def test_the_prompt_changed_and_files_are_written(trained):
  model_dir, result = trained
  final = mpt_jax.load_prompts(model_dir / "prompts.safetensors")
  assert final.kind == "bank"
  assert final.task_names == ("toy_first", "toy_upper", "toy_vowel")  # seqio sorts mixtures
  first = mpt_jax.load_prompts(model_dir / "prompts" / "step_10.safetensors")
  assert not np.allclose(first.merged(), final.merged())
  np.testing.assert_array_equal(final.merged(), result.prompts.merged())
  assert final.metadata["backbone_fingerprint"] == result.setup.backbone.fingerprint
  facts = json.loads((model_dir / "tasks.json").read_text())
  assert facts["tasks"] == list(final.task_names)
  assert "DataConfig" not in (model_dir / "config.gin").read_text()  # no gin was bound


def test_dev_evaluation_keeps_the_best_prompt_with_its_scores(trained):
  model_dir, result = trained
  results = result.metrics["eval"]
  assert set(results) == {"toy_vowel", "toy_first", "toy_upper"}
  assert all(set(metrics) == {"accuracy"} for metrics in results.values())
  logged = helpers.logged(model_dir, "eval")
  assert [row["step"] for row in logged] == [0, 30]  # the starting prompt, then the period
  assert logged[-1]["average"] == pytest.approx(
      np.mean([m["accuracy"] for m in results.values()]))
  best = json.loads((model_dir / "best.json").read_text())
  best_row = max(logged, key=lambda row: row["average"])  # the earliest of equals
  assert best["metric"] == "average" and best["step"] == best_row["step"]
  assert best["value"] == pytest.approx(best_row["average"])
  assert {f"{task}/{m}": v for task, ms in best["results"].items() for m, v in ms.items()} == {
      k: v for k, v in best_row.items() if "/" in k}
  saved = mpt_jax.load_prompts(model_dir / "best" / "prompts.safetensors")
  assert saved.metadata["step"] == best["step"]


def test_rerunning_a_finished_run_resumes_and_continues(tmp_path, tiny_backbone_dir):
  helpers.train_toy(tmp_path, tiny_backbone_dir, train_steps=10)
  helpers.train_toy(tmp_path, tiny_backbone_dir, train_steps=20)
  steps = [row["step"] for row in helpers.logged(tmp_path)]
  assert steps == list(range(1, 21))  # 11..20 continue where 1..10 stopped
  uninterrupted = helpers.train_toy(tmp_path / "straight", tiny_backbone_dir, train_steps=20)
  resumed = mpt_jax.load_prompts(tmp_path / "prompts.safetensors")
  np.testing.assert_allclose(resumed.merged(), uninterrupted.prompts.merged(), rtol=1e-6)


def test_a_refused_resume_leaves_model_dir_as_it_was(tmp_path, tiny_backbone_dir):
  helpers.train_toy(tmp_path / "run", tiny_backbone_dir, train_steps=10)
  before = faults.files_as_bytes(tmp_path / "run")
  other = helpers.write_tiny_backbone(tmp_path / "other", seed=1)
  with pytest.raises(checkpoints.RunMismatchError, match="fingerprint"):
    helpers.train_toy(tmp_path / "run", other, train_steps=20)
  with pytest.raises(checkpoints.RunMismatchError, match="optimizer state .* differs"):
    helpers.train_toy(tmp_path / "run", tiny_backbone_dir, train_steps=20,
                      optimizer=optimizers.make_optimizer(name="adam"))
  after = faults.files_as_bytes(tmp_path / "run")
  assert after == before


def test_bad_inputs_fail_before_writing_with_clear_messages(tmp_path, tiny_backbone_dir):
  with pytest.raises(ValueError, match=r"No SeqIO task or mixture named 'toy_mixx'.*toy_mix"):
    helpers.train_toy(tmp_path / "a", tiny_backbone_dir, mixture="toy_mixx")
  with pytest.raises(FileNotFoundError, match="Backbone path .* does not exist"):
    helpers.train_toy(tmp_path / "b", tmp_path / "no_backbone")
  with pytest.raises(ValueError, match=r"Eval tasks \['nope'\] are not among"):
    helpers.train_toy(tmp_path / "c", tiny_backbone_dir, eval_period=5, eval_tasks=["nope"])
  with pytest.raises(ValueError, match="batch_size 6 must divide over 4 input shards"):
    helpers.train_toy(tmp_path / "d", tiny_backbone_dir, batch_size=6, num_input_shards=4)
  assert not any((tmp_path / name).exists() for name in "abcd")


def test_the_setting_groups_come_from_gin(tmp_path, tiny_backbone_dir):
  gin.clear_config()
  try:
    gin.parse_config([
        "DataConfig.mixture_or_task_name = 'toy_targets'",
        "DataConfig.task_feature_lengths = {'inputs': 16, 'targets': 4}",
        "DataConfig.batch_size = 4", "CheckpointConfig.period = 2",
        "CheckpointConfig.keep = 1"])
    result = train_lib.train(str(tmp_path), backbone=str(tiny_backbone_dir), train_steps=4,
                             prompt=helpers.bank_prompt(), log_period=1)
  finally:
    gin.clear_config()
  assert result.setup.task_names == ["toy_first", "toy_vowel"]
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint_4"]


@pytest.fixture(name="twenty_steps", scope="module")
def run_of_twenty_steps(tmp_path_factory, tiny_backbone_dir):
  """A toy run stopped after 20 steps (checkpoints 10 and 20), and the final prompt of
  the same run trained straight to 30."""
  stopped = tmp_path_factory.mktemp("stopped") / "run"
  helpers.train_toy(stopped, tiny_backbone_dir, train_steps=20)
  straight = helpers.train_toy(tmp_path_factory.mktemp("straight") / "run", tiny_backbone_dir,
                               train_steps=30)
  return stopped, straight.prompts


@pytest.mark.parametrize("how", faults.CORRUPTIONS)
def test_a_damaged_latest_checkpoint_costs_one_period_and_nothing_else(tmp_path, how,
                                                                      twenty_steps,
                                                                      tiny_backbone_dir):
  stopped, straight = twenty_steps
  run = tmp_path / "run"
  shutil.copytree(stopped, run)
  faults.corrupt(run / "checkpoints" / "checkpoint_20", how)
  helpers.train_toy(run, tiny_backbone_dir, train_steps=30)
  steps = [row["step"] for row in helpers.logged(run)]
  assert steps == list(range(1, 21)) + list(range(11, 31))  # 11..20 again, from step 10
  np.testing.assert_array_equal(mpt_jax.load_prompts(run / "prompts.safetensors").merged(),
                                straight.merged())
  assert [p.name.split(".")[0] for p in (run / "checkpoints_corrupt").iterdir()
          if p.is_dir()] == ["checkpoint_20"]


def test_a_prompt_trained_on_another_backbone_is_refused_as_a_start(tmp_path, toy_run,
                                                                    tiny_backbone_dir):
  model_dir, _ = toy_run
  other = helpers.write_tiny_backbone(tmp_path / "other", seed=1)
  saved = model_dir / "prompts.safetensors"
  spot = lambda backbone, names: factories.prompt_bank(backbone, names, length=4, init="file",
                                                       init_prompts=str(saved))
  with pytest.raises(BackboneMismatchError, match=rf"{saved} were trained on backbone "
                                                  rf"'{tiny_backbone_dir}'"):
    helpers.train_toy(tmp_path / "spot", other, prompt=spot, train_steps=2)
  assert not (tmp_path / "spot").exists()
  helpers.train_toy(tmp_path / "spot", tiny_backbone_dir, prompt=spot, train_steps=2)
