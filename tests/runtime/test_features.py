"""The feature converter: int32 task ids, fixed or the dataset's; packing refused."""

import numpy as np
import pytest
import seqio
import tensorflow as tf

from mpt_jax.runtime import features
from tests import helpers
from tests import toy_tasks

LENGTHS = {"inputs": 6, "targets": 4}


def _tokenized(task_ids=None):
  """Two already-tokenized examples, with `task_ids` (int64, as tf.data makes them)."""
  examples = {"inputs": tf.ragged.constant([[5, 6, 1], [7, 8, 9, 10, 1]]),
              "targets": tf.ragged.constant([[11, 1], [12, 13, 1]])}
  if task_ids is not None:
    examples["task_ids"] = tf.constant(task_ids, tf.int64)
  ds = tf.data.Dataset.from_tensor_slices(examples)
  return ds.map(lambda ex: {k: v.to_tensor() if isinstance(v, tf.RaggedTensor) else v
                            for k, v in ex.items()})


def test_a_fixed_task_id_is_given_to_every_example_as_an_int32_scalar():
  converted = features.TaskIdFeatureConverter(task_id=3)(_tokenized(), LENGTHS)
  spec = converted.element_spec["task_ids"]
  assert spec.dtype == tf.int32 and spec.shape == ()
  rows = list(converted.as_numpy_iterator())
  assert [int(row["task_ids"]) for row in rows] == [3, 3]
  # The encoder-decoder features are seqio's, padded to the lengths.
  np.testing.assert_array_equal(rows[1]["encoder_input_tokens"], [7, 8, 9, 10, 1, 0])
  np.testing.assert_array_equal(rows[1]["decoder_target_tokens"], [12, 13, 1, 0])
  np.testing.assert_array_equal(rows[1]["decoder_input_tokens"], [0, 12, 13, 1])
  np.testing.assert_array_equal(rows[1]["decoder_loss_weights"], [1, 1, 1, 0])
  assert set(rows[0]) == {"encoder_input_tokens", "decoder_input_tokens",
                          "decoder_target_tokens", "decoder_loss_weights", "task_ids"}


def test_without_a_task_id_the_datasets_own_ids_are_kept_per_example():
  converted = features.TaskIdFeatureConverter()(_tokenized(task_ids=[4, 1]), LENGTHS)
  assert converted.element_spec["task_ids"] == tf.TensorSpec((), tf.int32)
  assert [int(row["task_ids"]) for row in converted.as_numpy_iterator()] == [4, 1]


def test_a_fixed_task_id_replaces_the_ids_a_dataset_carries():
  converted = features.TaskIdFeatureConverter(task_id=0)(_tokenized(task_ids=[4, 1]),
                                                         LENGTHS)
  assert [int(row["task_ids"]) for row in converted.as_numpy_iterator()] == [0, 0]


def test_batches_of_converted_examples_have_one_task_id_per_row():
  converted = features.TaskIdFeatureConverter()(_tokenized(task_ids=[2, 5]), LENGTHS)
  batch = next(converted.batch(2).as_numpy_iterator())
  assert batch["task_ids"].dtype == np.int32
  np.testing.assert_array_equal(batch["task_ids"], [2, 5])
  assert batch["encoder_input_tokens"].shape == (2, 6)


def test_a_dataset_without_task_ids_and_no_task_id_is_refused():
  with pytest.raises(ValueError, match="The dataset has no 'task_ids' feature; give the "
                     "converter a task_id"):
    features.TaskIdFeatureConverter()(_tokenized(), LENGTHS)


def test_packing_is_refused_with_its_reason():
  with pytest.raises(ValueError, match="Packing is not supported for prompt tuning: the "
                     "prompt prefixes a single example"):
    features.TaskIdFeatureConverter(task_id=0, pack=True)


def test_model_feature_lengths_give_task_ids_length_one():
  converter = features.TaskIdFeatureConverter(task_id=0)
  lengths = converter.get_model_feature_lengths({**LENGTHS, "task_ids": 9})
  assert lengths == {"encoder_input_tokens": 6, "decoder_target_tokens": 4,
                     "decoder_input_tokens": 4, "decoder_loss_weights": 4, "task_ids": 1}


def test_a_registered_task_goes_through_the_converter_with_its_id():
  ds = seqio.get_dataset("toy_vowel", helpers.TOY_LENGTHS,
                         features.TaskIdFeatureConverter(task_id=2), "validation")
  rows = list(ds.as_numpy_iterator())
  assert len(rows) == toy_tasks.SIZES["validation"]
  assert {int(row["task_ids"]) for row in rows} == {2}
  examples = toy_tasks._examples("toy_vowel", "validation")  # pylint: disable=protected-access
  first_input, first_target = examples[0]
  expected = list(toy_tasks.VOCAB.encode(first_input)) + [1]
  np.testing.assert_array_equal(rows[0]["encoder_input_tokens"][:len(expected)], expected)
  assert toy_tasks.VOCAB.decode(rows[0]["decoder_target_tokens"].tolist()) == first_target
