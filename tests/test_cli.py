"""The shared start-up: t5x's `--gin.NAME=VALUE` shorthand, the task modules read
before gin parses, the flags' gin bindings, and the flags a pipeline hands its stages."""

import gin
import pytest

from mpt_jax import cli


@pytest.fixture
def flags_restored():
  saved = {name: cli.FLAGS[name].value for name in cli.FLAGS}
  yield cli.FLAGS
  for name, value in saved.items():
    cli.FLAGS[name].value = value
  gin.clear_config()


def test_the_pipeline_hands_data_and_multi_host_flags_to_its_stages(flags_restored):
  flags_restored(["prog", "--tfds_data_dir=gs://bucket/tfds", "--multi_host",
                  "--gin_search_paths=/a,/b"])
  assert cli.stage_flags() == ["--gin_search_paths=/a,/b",
                               "--tfds_data_dir=gs://bucket/tfds", "--multi_host"]


def test_the_gin_shorthand_becomes_bindings():
  assert cli.rewrite_gin_shorthand(
      ["prog", "--gin.MODEL_DIR='/x'", "--gin_file=a.gin", "--gin.train.seed=3"]) == [
          "prog", "--gin_bindings=MODEL_DIR='/x'", "--gin_file=a.gin",
          "--gin_bindings=train.seed=3"]


def test_task_modules_are_read_from_files_and_bindings_before_parsing(tmp_path):
  run = tmp_path / "run.gin"
  run.write_text("TASK_MODULES = ['tasks.catalog']\nunknown_yet.value = 1\n")
  assert cli.task_modules_named([str(run)], []) == ["tasks.catalog"]
  assert cli.task_modules_named([str(run)], ["TASK_MODULES = ['tests.toy_tasks']"]) == [
      "tests.toy_tasks"]
  other = tmp_path / "none.gin"
  other.write_text("X = 1\n")
  assert cli.task_modules_named([str(other)], []) == []


def test_a_task_module_that_defines_configurables_is_imported_before_gin_locks(
    tmp_path, flags_restored, monkeypatch):
  module = tmp_path / "my_tasks.py"
  module.write_text("import gin\n@gin.configurable\ndef my_vocabulary(path=None):\n"
                    "  return path\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  run = tmp_path / "run.gin"
  run.write_text("TASK_MODULES = ['my_tasks']\nmy_vocabulary.path = 'spm.model'\n")
  flags_restored(["prog", f"--gin_file={run}"])
  cli.parse_gin()
  import my_tasks  # pylint: disable=g-import-not-at-top,import-error
  assert my_tasks.my_vocabulary() == "spm.model"


def test_the_sentencepiece_flag_binds_the_catalog_vocabulary(flags_restored, tmp_path):
  run = tmp_path / "run.gin"
  run.write_text("X = 1\n")
  flags_restored(["prog", f"--gin_file={run}", "--sentencepiece_model=/data/spiece.model"])
  cli.parse_gin()
  from tasks import vocab  # pylint: disable=g-import-not-at-top
  assert vocab.default_vocabulary().sentencepiece_model_file == "/data/spiece.model"

