"""The built-in runtime on one device: training, frozen backbone, checkpoints, resume,
evaluation and the failures it must report clearly."""

import json

import numpy as np
import orbax.checkpoint as ocp
import pytest

import mpt_jax
from mpt_jax import checkpointing
from mpt_jax import evaluate_prompts
from mpt_jax import optim
from mpt_jax import trainer
from tests import runtime_fixtures as rf


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
  return rf.write_tiny_backbone(tmp_path_factory.mktemp("backbone") / "tiny")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, backbone_dir):
  model_dir = tmp_path_factory.mktemp("run") / "model"
  result = rf.train_toy(model_dir, backbone_dir, train_steps=30, eval_period=30,
                        rank_classification=True)
  return model_dir, result


def test_loss_falls(trained):
  model_dir, _ = trained
  losses = [row["loss"] for row in rf.logged(model_dir)]
  assert len(losses) == 30
  assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5


def test_backbone_is_bit_identical_after_training(trained, backbone_dir):
  _, result = trained
  original = mpt_jax.load_backbone(backbone_dir).params
  frozen = {k: v for k, v in result.setup.frozen.items() if k != "teacher_prompt"}
  flat_before = mpt_jax.Backbone(result.setup.backbone.config, original).fingerprint
  on_device = mpt_jax.Backbone(result.setup.backbone.config, _host(frozen))
  assert on_device.fingerprint == flat_before


def _host(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.map(np.asarray, jax.device_get(tree))


def test_the_prompt_changed_and_files_are_written(trained):
  model_dir, result = trained
  final = mpt_jax.load_prompts(model_dir / "prompts.safetensors")
  assert final.kind == "bank" and final.task_names == ("toy_first", "toy_upper", "toy_vowel")  # seqio sorts mixtures
  first = mpt_jax.load_prompts(model_dir / "prompts" / "step_10.safetensors")
  assert not np.allclose(first.merged(), final.merged())
  np.testing.assert_array_equal(final.merged(), result.prompts.merged())
  assert final.metadata["backbone_fingerprint"] == result.setup.backbone.fingerprint
  facts = json.loads((model_dir / "tasks.json").read_text())
  assert facts["tasks"] == list(final.task_names)
  assert (model_dir / "config.gin").is_file()


def test_eval_reports_metrics_on_validation(trained):
  model_dir, result = trained
  results = result.metrics["eval"]
  assert set(results) == {"toy_vowel", "toy_first", "toy_upper"}
  for metrics in results.values():
    assert 0.0 <= metrics["accuracy"] <= 100.0
  assert rf.logged(model_dir, "eval")[-1]["step"] == 30
  best = json.loads((model_dir / "best.json").read_text())
  assert best["metric"] == "average" and best["step"] == 30
  assert (model_dir / "best" / "prompts.safetensors").is_file()


def test_checkpoints_hold_no_backbone_arrays(trained, backbone_dir):
  model_dir, _ = trained
  state_dir = model_dir / "checkpoints" / "checkpoint_30" / "state"
  metadata = ocp.StandardCheckpointer().metadata(state_dir)
  tree = getattr(metadata, "item_metadata", metadata)
  tree = getattr(tree, "tree", tree)
  paths = ["/".join(map(str, p)) for p, _ in _flatten(tree)]
  assert paths and all("token_embedder" not in p and "encoder" not in p for p in paths)
  assert any(p.startswith("params/prompt") for p in paths)
  size = sum(f.stat().st_size for f in (model_dir / "checkpoints").rglob("*") if f.is_file())
  backbone_size = (backbone_dir / "model.safetensors").stat().st_size
  assert size < backbone_size / 2


def _flatten(tree, prefix=()):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _flatten(v, prefix + (k,))
  else:
    yield prefix, tree


def test_rerunning_a_finished_run_resumes_and_continues(tmp_path, backbone_dir):
  rf.train_toy(tmp_path, backbone_dir, train_steps=10)
  rf.train_toy(tmp_path, backbone_dir, train_steps=20)
  steps = [row["step"] for row in rf.logged(tmp_path)]
  assert steps == list(range(1, 21))  # 11..20 continue where 1..10 stopped
  uninterrupted = rf.train_toy(tmp_path / "straight", backbone_dir, train_steps=20)
  resumed = mpt_jax.load_prompts(tmp_path / "prompts.safetensors")
  np.testing.assert_allclose(resumed.merged(), uninterrupted.prompts.merged(), rtol=1e-6)


def test_resuming_on_another_backbone_is_refused(tmp_path, backbone_dir):
  rf.train_toy(tmp_path / "run", backbone_dir, train_steps=10)
  other = rf.write_tiny_backbone(tmp_path / "other", seed=1)
  with pytest.raises(checkpointing.RunMismatchError, match="fingerprint"):
    rf.train_toy(tmp_path / "run", other, train_steps=20)


def test_nan_loss_stops_with_step_and_last_checkpoint(tmp_path, backbone_dir):
  rf.train_toy(tmp_path, backbone_dir, train_steps=10)
  exploding = optim.make_optimizer(learning_rate=1e35)
  with pytest.raises(trainer.NonFiniteLossError,
                     match=r"loss is nan at step 1[1-9] .*last good checkpoint \(step 10\)"):
    rf.train_toy(tmp_path, backbone_dir, train_steps=20, optimizer=exploding)
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["checkpoint_10"]
  with pytest.raises(checkpointing.RunMismatchError, match="optimizer state .* differs"):
    rf.train_toy(tmp_path, backbone_dir, train_steps=20,
                 optimizer=optim.make_optimizer(name="adam"))


def test_bad_inputs_fail_before_compiling_with_clear_messages(tmp_path, backbone_dir):
  with pytest.raises(ValueError, match=r"No SeqIO task or mixture named 'toy_mixx'.*toy_mix"):
    rf.train_toy(tmp_path / "a", backbone_dir, mixture_or_task_name="toy_mixx")
  with pytest.raises(FileNotFoundError, match="Backbone path .* does not exist"):
    rf.train_toy(tmp_path / "b", tmp_path / "no_backbone")
  with pytest.raises(ValueError, match="Eval tasks \\['nope'\\] are not among"):
    rf.train_toy(tmp_path / "c", backbone_dir, eval_period=5, eval_tasks=["nope"])
  assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_eval_of_the_saved_prompt_reproduces_the_training_eval(trained, backbone_dir,
                                                                tmp_path):
  model_dir, result = trained
  summary = evaluate_prompts.evaluate(
      str(tmp_path), prompts=str(model_dir), backbone=str(backbone_dir),
      task_feature_lengths={"inputs": 16, "targets": 4}, splits=("validation",),
      batch_size=8, rank_classification=True)
  assert summary["prompts"].endswith("best/prompts.safetensors")
  assert summary["results"]["validation"] == result.metrics["eval"]
  written = json.loads((tmp_path / "results.json").read_text())
  assert written["results"]["validation"] == result.metrics["eval"]
