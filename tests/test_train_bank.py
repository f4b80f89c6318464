"""Run banks: runs trained as one job end as the same runs trained alone (PT, SPoT and
MPT; seeds, few-shot draws and learning rates), a diverging run is stopped and named
while the others go on, and runs that cannot share a step are refused."""

import json
import re

import gin
import jax
import numpy as np
import pytest

import mpt_jax
from mpt_jax import cli
from mpt_jax import train as train_lib
from mpt_jax.prompts import modules as prompt_modules
from mpt_jax.runtime import loop
from mpt_jax.runtime import optimizers
from mpt_jax.runtime import sweeps
from mpt_jax.runtime.configs import CheckpointConfig
from mpt_jax.runtime.configs import DataConfig
from mpt_jax.runtime.configs import EvalConfig
from tests import helpers

# The equivalence tolerance: a bank's step maps the loss over its runs, which changes
# the shapes XLA computes with (and so the order of some float sums), never the math.
# Each value of a bank's prompt is within TOLERANCE x the prompt's largest magnitude of
# the lone run's (measured: at most 3e-5 of it, Adafactor's normalised updates carrying the
# float differences of the gradient into the prompt).
TOLERANCE = 1e-4
TARGETS = ["toy_vowel", "toy_first"]
LENGTH, WIDTH = 4, helpers.TINY["d_model"]


def _source_prompts(directory, backbone):
  """A teachers run's prompt bank over the toy tasks and a distillation run's P* ∘ u vᵀ,
  random, as the stage-1 and stage-2 files stage 3 starts from."""
  rng = np.random.default_rng(0)
  facts = {"backbone": str(backbone.source), "backbone_fingerprint": backbone.fingerprint}
  teachers = mpt_jax.PromptSet(
      "bank", {"prompts": rng.normal(size=(3, LENGTH, WIDTH))},
      ["toy_vowel", "toy_first", "toy_upper"], backbone_config={"d_model": WIDTH},
      metadata=facts)
  distilled = mpt_jax.PromptSet(
      "decomposed", {prompt_modules.SHARED: rng.normal(size=(LENGTH, WIDTH)),
                     prompt_modules.TASK_COLS: 1 + 0.1 * rng.normal(size=(3, LENGTH, 1)),
                     prompt_modules.TASK_ROWS: 1 + 0.1 * rng.normal(size=(3, 1, WIDTH))},
      ["toy_vowel", "toy_first", "toy_upper"], backbone_config={"d_model": WIDTH},
      metadata=facts)
  return (str(teachers.save(directory / "teachers.safetensors")),
          str(distilled.save(directory / "distill.safetensors")))


METHODS = {"pt": "runs/prompt_tuning.gin", "spot": "runs/spot.gin", "mpt": "runs/adapt.gin"}


# A bank's runs: 2 seeds x 2 few-shot draws and 2 more learning rates. PT and SPoT share
# a bank (one prompt structure), taking turns; MPT has its own.
SETTINGS = [(0, 0, None), (0, 1, None), (1, 0, None), (1, 1, None), (0, 0, 0.1),
            (1, 1, 1.0)]


def _variants(home, backbone_dir, teachers, distilled, methods):
  """Each a whole `mpt_jax.train` configuration, as the pipeline gives its banks."""
  variants = []
  for i, (seed, draw, rate) in enumerate(SETTINGS):
    method = methods[i % len(methods)]
    name = f"{method}_s{seed}_d{draw}" + (f"_lr{rate}" if rate else "")
    bindings = [f"BACKBONE = {str(backbone_dir)!r}", f"MODEL_DIR = {str(home / name)!r}",
                "TARGET_MIXTURE = 'toy_targets'", f"TARGET_TASKS = {TARGETS!r}",
                f"SEED = {seed}", "FEW_SHOT_K = 4", f"FEW_SHOT_SEED = {draw}",
                f"TEACHER_PROMPTS = {teachers!r}", f"SOURCE_PROMPTS = {distilled!r}",
                "SPOT_SOURCES = 'toy_upper'", "TASK_MODULES = ['tests.toy_tasks']",
                "TRAIN_STEPS = 4", "EVAL_PERIOD = 2", "CheckpointConfig.period = 2"]
    if rate is not None:
      bindings.append(f"make_optimizer.learning_rate = {rate}" if method != "mpt" else
                      f"make_optimizer.group_learning_rates = {{'shared_prompt': {rate}, "
                      f"'task_cols': {rate}, 'task_rows': {rate}}}")
    variants.append(sweeps.Variant(
        name, (METHODS[method], "runs/few_shot.gin", "tests/toy_stage.gin"), tuple(bindings)))
  return variants


def _bank_command(home) -> cli.GinConfig:
  """What the pipeline starts a bank with: a gin file of its own directory."""
  home.mkdir(parents=True, exist_ok=True)
  (home / "bank.gin").write_text("MODEL_DIR = %r\nTASK_MODULES = ['tests.toy_tasks']\n"
                                 % str(home))
  return cli.GinConfig((str(home / "bank.gin"),), ())


@pytest.fixture(name="trained", scope="module")
def banks_and_their_runs_alone(tmp_path_factory, tiny_backbone_dir):
  """The PT+SPoT bank and the MPT bank of `_variants`, 6 runs each, and each of their 12
  runs trained alone: {name: (bank's run dir, lone run's dir)}. Compilations are cached
  on disk meanwhile: lone runs of one method and learning rate compile the same step."""
  root = tmp_path_factory.mktemp("banks")
  cache = {name: getattr(jax.config, name) for name in (
      "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
      "jax_persistent_cache_min_entry_size_bytes")}
  jax.config.update("jax_compilation_cache_dir", str(root / "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  backbone = mpt_jax.load_backbone(tiny_backbone_dir)
  teachers, distilled = _source_prompts(root, backbone)
  cli.add_gin_search_paths()
  pairs = {}
  try:
    for methods in (("pt", "spot"), ("mpt",)):
      home = root / "bank" / "+".join(methods)
      variants = _variants(home, tiny_backbone_dir, teachers, distilled, methods)
      train_lib.train_sweep(sweeps.Sweep(variants, str(home)), _bank_command(home))
      for variant in _variants(root / "alone", tiny_backbone_dir, teachers, distilled,
                               methods):
        with cli.GinConfig(variant.gin_files, variant.bindings).activate():
          train_lib.train()
        pairs[variant.name] = (home / variant.name, root / "alone" / variant.name)
  finally:
    gin.clear_config()  # the last run's settings must not reach other tests
    for name, value in cache.items():
      jax.config.update(name, value)
  return pairs


def _unwrapped(config: str) -> str:
  """A config.gin's text with gin's line continuations joined (they follow path lengths)."""
  return re.sub(r" *\\\n *", " ", config)


def _prompts(path):
  return mpt_jax.load_prompts(path).arrays


def _assert_close(banked, lone, message):
  np.testing.assert_allclose(banked, lone, rtol=0,
                             atol=TOLERANCE * np.abs(lone).max(), err_msg=message)


@pytest.mark.xdist_group("banks")
def test_every_run_of_a_bank_ends_with_the_prompts_it_ends_with_alone(trained):
  assert len(trained) == 12
  for name, (in_bank, alone) in trained.items():
    for prompts in ("prompts.safetensors", "best/prompts.safetensors"):
      banked, lone = _prompts(in_bank / prompts), _prompts(alone / prompts)
      assert banked.keys() == lone.keys()
      for key in banked:
        _assert_close(banked[key], lone[key], f"{name} {prompts} {key}")


@pytest.mark.xdist_group("banks")
def test_every_run_of_a_bank_picks_the_best_step_and_scores_it_does_alone(trained):
  distinct = set()
  for name, (in_bank, alone) in trained.items():
    banked, lone = (json.loads((d / "best.json").read_text()) for d in (in_bank, alone))
    assert banked == lone, name
    evals = [helpers.logged(d, "eval") for d in (in_bank, alone)]
    assert [row["step"] for row in evals[0]] == [0, 2, 4]
    assert evals[0] == evals[1], name
    losses = [[row["loss"] for row in helpers.logged(d)] for d in (in_bank, alone)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5, err_msg=name)
    distinct.add(tuple(losses[0]))
  assert len(distinct) == 12  # no two runs trained alike: seeds, draws, rates, methods


@pytest.mark.xdist_group("banks")
def test_a_banks_runs_write_the_run_directory_a_lone_run_writes(trained):
  for in_bank, alone in trained.values():
    assert sorted(p.name for p in in_bank.iterdir()) == sorted(p.name for p in alone.iterdir())
    assert (json.loads((in_bank / "tasks.json").read_text()) ==
            json.loads((alone / "tasks.json").read_text()))
    # Each run's config.gin trains that run alone: the lone run's settings, with the
    # bank's cleared.
    banked, lone = (_unwrapped((d / "config.gin").read_text()).replace(str(d), "MODEL_DIR")
                    for d in (in_bank, alone))
    sweep_block = ("# Parameters for sweep:\n# " + "=" * 78 + "\n" +
                   "".join(f"{b}\n" for b in sorted(sweeps.NO_SWEEP)) + "\n")
    assert sweep_block in banked
    assert banked.replace(sweep_block, "") == lone


def test_a_diverging_run_is_stopped_and_named_while_the_others_finish(tmp_path,
                                                                      tiny_backbone_dir):
  def spec(name, rate):
    return train_lib.run_spec(
        str(tmp_path / name), backbone=str(tiny_backbone_dir), train_steps=8,
        data=DataConfig("toy_mix", helpers.TOY_LENGTHS, 8), prompt=helpers.bank_prompt(),
        optimizer=optimizers.make_optimizer(learning_rate=rate),
        checkpointing=CheckpointConfig(period=2), log_period=4)
  rates = {"calm": 0.3, "exploding": 1e35, "steady": 0.1}
  with pytest.raises(loop.NonFiniteLossError,
                     match=r"1 of the 3 runs failed; the others finished\. .* at step \d of "
                           r".*exploding.*The bank went on without it"):
    train_lib.train_bank([spec(name, rate) for name, rate in rates.items()])
  failure = json.loads((tmp_path / "exploding" / "failed.json").read_text())
  assert 1 < failure["step"] <= 4 and not np.isfinite(failure["loss"])
  assert not (tmp_path / "exploding" / "prompts.safetensors").exists()
  checkpoints = tmp_path / "exploding" / "checkpoints"
  saved = sorted(p.name for p in checkpoints.iterdir()) if checkpoints.exists() else []
  assert saved == [f"checkpoint_{s}" for s in range(2, failure["step"], 2)]  # all finite
  # The others were not touched by it: each ends as it does alone.
  for name in ("calm", "steady"):
    alone = train_lib.train_bank([spec(name + "_alone", rates[name])])[0].prompts
    banked = mpt_jax.load_prompts(tmp_path / name / "prompts.safetensors")
    _assert_close(banked.arrays["prompts"], alone.arrays["prompts"], name)
  # A rerun keeps the failed run failed and the others finished.
  with pytest.raises(loop.NonFiniteLossError, match="1 of the 3 runs failed"):
    train_lib.train_bank([spec(name, rate) for name, rate in rates.items()])


def _toy_spec(model_dir, backbone_dir, **changes):
  settings = dict(backbone=str(backbone_dir), train_steps=4,
                  data=DataConfig("toy_mix", helpers.TOY_LENGTHS, 8),
                  prompt=helpers.bank_prompt(), evaluation=EvalConfig())
  return train_lib.run_spec(str(model_dir), **{**settings, **changes})


@pytest.mark.parametrize("change,message", [
    ({"train_steps": 5}, "share train_steps: {b} has 5, {a} has 4"),
    ({"data": DataConfig("toy_mix", helpers.TOY_LENGTHS, 16)},
     "share DataConfig.batch_size: {b} has 16, {a} has 8"),
    ({"evaluation": EvalConfig(period=2)}, "share EvalConfig.period: {b} has 2, {a} has 0"),
    ({"prompt": helpers.bank_prompt(length=5)},
     "share the prompt's kind, shapes and axes: {b} has ('PromptBank'"),
])
def test_runs_that_cannot_share_a_step_are_refused_before_training(
    tmp_path, tiny_backbone_dir, change, message):
  a, b = tmp_path / "a", tmp_path / "b"
  with pytest.raises(ValueError, match=re.escape(message.format(a=a, b=b))):
    train_lib.train_bank([_toy_spec(a, tiny_backbone_dir),
                          _toy_spec(b, tiny_backbone_dir, **change)])
  assert not (a / "checkpoints").exists() and not (b / "checkpoints").exists()


def test_two_runs_of_a_bank_cannot_share_a_model_dir(tmp_path, tiny_backbone_dir):
  with pytest.raises(ValueError, match="need MODEL_DIRs of their own"):
    train_lib.train_bank([_toy_spec(tmp_path, tiny_backbone_dir),
                          _toy_spec(tmp_path, tiny_backbone_dir, seed=1)])


def test_a_sweeps_runs_train_in_banks_of_what_they_share_at_most_the_cap(tmp_path,
                                                                         tiny_backbone_dir):
  backbone = mpt_jax.load_backbone(tiny_backbone_dir)
  specs = [helpers.toy_spec(tmp_path / "a", backbone, train_steps=4),
           helpers.toy_spec(tmp_path / "b", backbone, train_steps=4, seed=1),
           helpers.toy_spec(tmp_path / "c", backbone, train_steps=8),
           helpers.toy_spec(tmp_path / "d", backbone, train_steps=4,
                            prompt=helpers.bank_prompt(length=5)),
           helpers.toy_spec(tmp_path / "e", backbone, train_steps=4, seed=2,
                            optimizer=optimizers.make_optimizer(learning_rate=1.0))]
  # Seeds and learning rates share a step; another step count or prompt shape does not.
  assert train_lib._banks_of(specs, None) == [[0, 1, 4], [2], [3]]  # pylint: disable=protected-access
  assert train_lib._banks_of(specs, 2) == [[0, 1], [4], [2], [3]]  # pylint: disable=protected-access
