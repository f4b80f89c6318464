"""k-shot subsets: deterministic, exactly k, seed-dependent, inside the parent's train split."""

import numpy as np
import pytest
import seqio
import tensorflow as tf

from tasks import few_shot
from tasks import registry
from tests.mocked_catalog import as_text
from tests.mocked_catalog import first_text
from tests.helpers import SUFFIX
from tests.mocked_catalog import trace

PARENT_SIZE = 100


def _numbers_dataset(split, shuffle_files, seed=None):
  del shuffle_files, seed
  return tf.data.Dataset.range(PARENT_SIZE).map(
      lambda i: {"inputs": tf.strings.join([split, tf.strings.as_string(i)], " "),
                 "targets": tf.strings.as_string(i % 2)})


@pytest.fixture(scope="module")
def numbers_task():
  """A non-TFDS task whose source does not know its size (counted by reading it)."""
  name = "few_shot_test_numbers"
  seqio.TaskRegistry.remove(name)
  vocabulary = seqio.ByteVocabulary()
  seqio.TaskRegistry.add(
      name, seqio.FunctionDataSource(_numbers_dataset, splits=("train", "validation", "test")),
      output_features={"inputs": seqio.Feature(vocabulary), "targets": seqio.Feature(vocabulary)},
      preprocessors=[seqio.preprocessors.tokenize])
  registry.register_class_labels(name, ("0", "1"))
  return name


def _inputs(task_name, split, **kwargs):
  ds = seqio.get_mixture_or_task(task_name).get_dataset(None, split=split, shuffle=False,
                                                         **kwargs)
  return [as_text(ex["inputs_pretokenized"]) for ex in ds.as_numpy_iterator()]


def test_a_subset_has_exactly_k_examples_of_the_parent_train_split(numbers_task):
  name = few_shot.register_few_shot(numbers_task, k=16, seed=3)
  assert name == f"{numbers_task}_k16_s3"
  subset = _inputs(name, "train")
  assert len(subset) == len(set(subset)) == 16
  assert set(subset) <= set(_inputs(numbers_task, "train"))
  assert seqio.get_mixture_or_task(name).num_input_examples("train") == 16


def test_a_subset_is_deterministic_given_k_and_seed(numbers_task):
  name = few_shot.register_few_shot(numbers_task, k=8, seed=1)
  first = _inputs(name, "train")
  assert _inputs(name, "train") == first
  # A fresh source (as in another process) draws the same positions.
  parent = seqio.get_mixture_or_task(numbers_task).source
  again = few_shot.FewShotSource(parent, k=8, seed=1, parent_name=numbers_task)
  assert sorted(again.positions.tolist()) == [int(text.split()[1]) for text in first]
  assert few_shot.register_few_shot(numbers_task, k=8, seed=1) == name  # registered once


def test_different_seeds_draw_different_subsets(numbers_task):
  subsets = {frozenset(_inputs(few_shot.register_few_shot(numbers_task, k=4, seed=s), "train"))
             for s in range(5)}
  assert len(subsets) == 5


def test_evaluation_splits_and_labels_are_the_parents(numbers_task):
  name = few_shot.register_few_shot(numbers_task, k=4, seed=0)
  for split in ("validation", "test"):
    assert _inputs(name, split) == _inputs(numbers_task, split)
  assert registry.class_labels(name) == ("0", "1")


def test_shards_partition_the_subset(numbers_task):
  name = few_shot.register_few_shot(numbers_task, k=10, seed=2)
  shards = [_inputs(name, "train", shard_info=seqio.ShardInfo(index=i, num_shards=2))
            for i in range(2)]
  assert not set(shards[0]) & set(shards[1])
  assert sorted(shards[0] + shards[1]) == sorted(_inputs(name, "train"))


def test_bad_requests_fail_clearly(numbers_task):
  with pytest.raises(ValueError, match=rf"{numbers_task}.* has 100 training examples.*k <= 100"):
    few_shot.register_few_shot(numbers_task, k=101, seed=0)
  with pytest.raises(ValueError, match="positive"):
    few_shot.register_few_shot(numbers_task, k=0, seed=0)
  with pytest.raises(ValueError, match="Close registered names: few_shot_test_numbers"):
    few_shot.register_few_shot("few_shot_test_number", k=4, seed=0)


@pytest.mark.usefixtures("byte_catalog", "mock_catalog_tfds")
def test_catalog_tasks_get_k_shot_variants():
  parent = "mpt_superglue_cb" + SUFFIX
  name = few_shot.register_few_shot(parent, k=3, seed=0)
  examples = list(seqio.get_mixture_or_task(name).get_dataset(
      None, split="train", shuffle=False).as_numpy_iterator())
  positions = [trace(as_text(ex["inputs_pretokenized"]))[2] for ex in examples]
  parent_source = seqio.get_mixture_or_task(parent).source
  parent_positions = [trace(first_text(ex))[2] for ex in
                      parent_source.get_dataset("train", shuffle=False).as_numpy_iterator()]
  expected = np.asarray(parent_positions)[np.random.RandomState(0).permutation(
      len(parent_positions))[:3]]
  assert sorted(positions) == sorted(expected.tolist())
  assert all(ex["inputs"][-1] == 1 for ex in examples)  # preprocessed like the parent
  assert registry.class_labels(name) == registry.class_labels(parent)
  with pytest.raises(ValueError, match="mixture"):
    few_shot.register_few_shot("superglue_mpt" + SUFFIX, k=4, seed=0)


@pytest.mark.parametrize("parent, k, seed", [("mpt_glue_rte", 16, 3), ("toy_vowel", 4, 0),
                                             ("a_k2_s1", 32, 10)])
def test_a_few_shot_name_parses_back_to_its_parent_k_and_seed(parent, k, seed):
  name = few_shot.few_shot_name(parent, k, seed)
  assert name == f"{parent}_k{k}_s{seed}"
  assert few_shot.parse_few_shot_name(name) == (parent, k, seed)
  assert few_shot.parent_name(name) == parent


@pytest.mark.parametrize("name", ["mpt_glue_rte", "toy_k16", "toy_k16_s", "toy_kA_s1",
                                  "toy_k16_s3_extra", "_k16_s3", "toy_k16_s3 "])
def test_a_name_that_is_not_a_k_shot_variant_parses_to_none(name):
  assert few_shot.parse_few_shot_name(name) is None
  assert few_shot.parent_name(name) == name
