"""Task look-ups: importing task modules, tasks and mixtures by name (with close names
when unknown, k-shot variants on demand), a mixture's leaf tasks and label token ids."""

import sys

import pytest
import seqio

from tasks import registry
from tests import toy_tasks


MODULE = """
import seqio
import tensorflow as tf
seqio.TaskRegistry.add(
    "registry_test_imported",
    source=seqio.FunctionDataSource(
        lambda split, shuffle_files, seed=None: tf.data.Dataset.from_tensors({"x": "y"}),
        splits=["train"]),
    output_features={})
"""


def test_importing_task_modules_registers_their_tasks(tmp_path, monkeypatch):
  (tmp_path / "registry_test_module.py").write_text(MODULE)
  monkeypatch.syspath_prepend(str(tmp_path))
  assert "registry_test_imported" not in seqio.TaskRegistry.names()
  try:
    registry.import_task_modules(["tests.toy_tasks", "registry_test_module"])
    assert "registry_test_imported" in seqio.TaskRegistry.names()
  finally:
    seqio.TaskRegistry.remove("registry_test_imported")
    sys.modules.pop("registry_test_module", None)


def test_a_missing_task_module_is_an_import_error_naming_it():
  with pytest.raises(ImportError, match="Cannot import task module 'tests.no_such_tasks'"):
    registry.import_task_modules(["tests.toy_tasks", "tests.no_such_tasks"])


def test_tasks_and_mixtures_are_found_by_name():
  assert isinstance(registry.get_task_or_mixture("toy_mix"), seqio.Mixture)
  task = registry.get_task_or_mixture("toy_first")
  assert isinstance(task, seqio.Task) and task.name == "toy_first"


def test_an_unknown_name_lists_the_closest_registered_names():
  with pytest.raises(ValueError, match=r"No SeqIO task or mixture named 'toy_vowels'\. "
                                       r"Close registered names: toy_vowel"):
    registry.get_task_or_mixture("toy_vowels")
  with pytest.raises(ValueError) as error:
    registry.get_task_or_mixture("#" * 40)
  assert "Close registered names" not in str(error.value)
  assert "MIXTURE_OR_TASK_MODULE" in str(error.value)


def test_a_k_shot_name_of_a_registered_task_is_registered_on_demand():
  name = "toy_upper_k5_s11"
  assert name not in seqio.TaskRegistry.names()
  task = registry.get_task_or_mixture(name)
  assert isinstance(task, seqio.Task) and task.name == name
  assert name in seqio.TaskRegistry.names()
  assert task.num_input_examples("train") == 5
  assert task.num_input_examples("validation") == toy_tasks.SIZES["validation"]
  assert registry.get_task_or_mixture(name) is task


def test_a_k_shot_name_of_an_unknown_task_or_a_mixture_is_unknown():
  with pytest.raises(ValueError, match="No SeqIO task or mixture named 'toy_uper_k4_s0'"):
    registry.get_task_or_mixture("toy_uper_k4_s0")
  with pytest.raises(ValueError, match="No SeqIO task or mixture named 'toy_mix_k4_s0'"):
    registry.get_task_or_mixture("toy_mix_k4_s0")
  assert "toy_mix_k4_s0" not in seqio.TaskRegistry.names()


def test_task_names_are_a_mixtures_leaf_tasks_in_seqios_order():
  # seqio orders a mixture's tasks by name, whatever order they were added in.
  assert registry.task_names("toy_targets") == ["toy_first", "toy_vowel"]
  assert registry.task_names("toy_mix") == ["toy_first", "toy_upper", "toy_vowel"]
  assert registry.task_names("toy_upper") == ["toy_upper"]
  nested = "registry_test_nested"
  if nested not in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.add(nested, ["toy_targets", "toy_upper"], default_rate=1.0)
  assert registry.task_names(nested) == ["toy_first", "toy_upper", "toy_vowel"]


def test_label_token_ids_are_each_labels_target_ids_without_eos():
  # ByteVocabulary: each UTF-8 byte plus 3 (ids 0-2 are pad, EOS and UNK).
  assert registry.label_token_ids("toy_vowel") == [[ord(c) + 3 for c in "yes"],
                                                   [ord(c) + 3 for c in "no"]]
  assert registry.label_token_ids("toy_first") is None


def test_registered_labels_and_primary_metrics_are_looked_up_by_task():
  registry.register_class_labels("registry_test_task", ["b", "a"])
  registry.register_primary_metric("registry_test_task", "f1")
  assert registry.class_labels("registry_test_task") == ("b", "a")
  assert registry.primary_metric("registry_test_task") == "f1"
  assert registry.class_labels("registry_test_other") is None
  assert registry.primary_metric("registry_test_other") is None
