"""A run's data is checked before anything compiles: unprepared TFDS data, empty splits,
unreadable vocabularies and truncation are named with what to do about them."""

import logging

import pytest
import seqio
import tensorflow as tf

from mpt_jax.runtime import data_checks
from tasks import tfds_data

BYTES = seqio.ByteVocabulary()


def _register(name, texts, vocabulary=BYTES, preprocessors=()):
  """A task over `texts` (inputs and targets alike) in every split."""
  def dataset_fn(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_tensor_slices(
        {"inputs": tf.constant(texts, tf.string), "targets": tf.constant(texts, tf.string)})
  seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.add(
      name, source=seqio.FunctionDataSource(dataset_fn, splits=("train", "validation")),
      preprocessors=[*preprocessors, seqio.preprocessors.tokenize,
                     seqio.preprocessors.append_eos_after_trim],
      output_features={k: seqio.Feature(vocabulary, add_eos=True)
                       for k in ("inputs", "targets")})
  return name


@pytest.fixture
def unprepared_data_dir(tmp_path):
  """seqio's TFDS data dir pointed at an empty folder (what --tfds_data_dir sets)."""
  seqio.utils.LazyTfdsLoader._MEMOIZED_BUILDERS.clear()  # pylint: disable=protected-access
  seqio.set_tfds_data_dir_override(str(tmp_path))
  yield tmp_path
  seqio.set_tfds_data_dir_override(None)
  seqio.utils.LazyTfdsLoader._MEMOIZED_BUILDERS.clear()  # pylint: disable=protected-access


@pytest.mark.usefixtures("byte_catalog")
def test_an_unprepared_catalog_dataset_names_the_builder_split_and_build_command(
    unprepared_data_dir):
  with pytest.raises(tfds_data.DatasetNotPreparedError) as raised:
    data_checks.check_tasks(["mpt_glue_rte_bytes"], "validation", {"inputs": 8, "targets": 4})
  message = str(raised.value)
  assert f"glue/rte:2.0.0, which is not prepared in {unprepared_data_dir}" in message
  assert "its 'validation' split is missing" in message
  assert f"tfds build glue/rte --data_dir={unprepared_data_dir}" in message


def test_an_unprepared_seqio_tfds_task_is_named_too(unprepared_data_dir):
  seqio.TaskRegistry.remove("checks_tfds_task")
  seqio.TaskRegistry.add("checks_tfds_task", source=seqio.TfdsDataSource("glue/cola:2.0.0"),
                         output_features={})
  try:
    with pytest.raises(tfds_data.DatasetNotPreparedError,
                       match=r"Task 'checks_tfds_task' reads the TFDS dataset glue/cola:2.0.0.*"
                             r"\n  tfds build glue/cola --data_dir="):
      data_checks.check_tasks(["checks_tfds_task"], "train", {"inputs": 8, "targets": 4})
  finally:
    seqio.TaskRegistry.remove("checks_tfds_task")


def test_an_empty_split_is_refused_with_the_task_split_and_size():
  name = _register("checks_empty", [])
  with pytest.raises(data_checks.DataError,
                     match=r"Task 'checks_empty' has no examples in its 'validation' split \(0"):
    data_checks.check_tasks([name], "validation", {"inputs": 8, "targets": 4})


def test_a_training_split_smaller_than_the_batch_is_said_with_both_sizes(caplog):
  name = _register("checks_small", ["a", "b", "c"])
  with caplog.at_level(logging.WARNING):
    data_checks.check_tasks([name], "train", {"inputs": 8, "targets": 8}, batch_size=32)
  assert "checks_small train has 3 examples, fewer than the batch of 32" in caplog.text


def test_truncated_examples_are_counted_and_reported_per_task_and_feature(caplog):
  # With EOS, "abcdefghi" is 10 tokens and "abc" 4: two of four inputs exceed 6.
  name = _register("checks_long", ["abcdefghi", "abc", "abcdefgh", "ab"])
  with caplog.at_level(logging.WARNING):
    [sample] = data_checks.check_tasks([name], "train", {"inputs": 6, "targets": 12})
  assert sample.too_long == {"inputs": 2, "targets": 0}
  assert sample.longest == {"inputs": 10, "targets": 10}
  assert sample.complete and sample.examples == 4
  assert ("checks_long train: 2 of the first 4 examples (50.0%) have inputs longer than 6 "
          "tokens (the longest 10); they are cut to fit. Raise TASK_FEATURE_LENGTHS['inputs']"
          in caplog.text)
  assert "have targets longer" not in caplog.text


def test_only_the_first_examples_are_read():
  name = _register("checks_sampled", ["abcdefghi"] * 5)
  sample = data_checks.sample_split(seqio.get_mixture_or_task(name), "train",
                                    {"inputs": 6, "targets": 12}, limit=3)
  assert (sample.examples, sample.complete, sample.too_long["inputs"]) == (3, False, 3)


def test_a_task_that_shapes_its_examples_to_the_lengths_is_read_at_those_lengths():
  def fit_to_lengths(ds, sequence_length):  # like span corruption, it needs the lengths
    return ds.map(lambda ex: {**ex, **{k: ex[k][:sequence_length[k] - 1]
                                       for k in sequence_length}})
  name = _register("checks_shaped", ["abcdefghi"], preprocessors=())
  task = seqio.get_mixture_or_task(name)
  task = task.replace(preprocessors=[seqio.preprocessors.tokenize, fit_to_lengths,
                                     seqio.preprocessors.append_eos_after_trim])
  sample = data_checks.sample_split(task, "train", {"inputs": 4, "targets": 4})
  assert sample.too_long == {"inputs": 0, "targets": 0}
  assert sample.longest == {"inputs": 4, "targets": 4}


def test_an_unreadable_vocabulary_names_the_task_the_path_and_the_flag(tmp_path):
  missing = tmp_path / "no_such.model"
  name = _register("checks_vocab", ["a"], seqio.SentencePieceVocabulary(str(missing)))
  with pytest.raises(data_checks.DataError) as raised:
    data_checks.check_tasks([name], "train", {"inputs": 8, "targets": 8})
  message = str(raised.value)
  assert "Cannot read the vocabulary of task 'checks_vocab'" in message
  assert str(missing) in message and "--sentencepiece_model=" in message


def test_k_shot_tasks_are_checked_once_on_their_parents_split_with_their_own_size(
    caplog, monkeypatch):
  from tasks import few_shot  # pylint: disable=g-import-not-at-top
  name = _register("checks_parent", ["a", "b", "c", "d", "e"])
  variants = [few_shot.register_few_shot(name, k=2, seed=seed) for seed in (0, 1)]
  read, sample = [], data_checks.sample_split
  monkeypatch.setattr(data_checks, "sample_split",
                      lambda task, *args: read.append(task.name) or sample(task, *args))
  with caplog.at_level(logging.WARNING):
    samples = data_checks.check_tasks(variants, "train", {"inputs": 8, "targets": 8},
                                      batch_size=4)
  assert read == [name]  # the parent's split holds every draw's examples
  assert [s.task for s in samples] == [name, name] and samples[0].examples == 5
  for variant in variants:
    assert f"{variant} train has 2 examples, fewer than the batch of 4" in caplog.text
