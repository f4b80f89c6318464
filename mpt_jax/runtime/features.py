"""A SeqIO feature converter that keeps each example's task id.

seqio's EncDecFeatureConverter drops every feature it does not know, so `task_ids`
rides through it as a length-1 passthrough feature and comes out as a scalar.
Packing is refused: a prompt prefixes one example, and packed examples would share
a prompt (and attend across examples through it).
"""

from typing import Mapping, Optional

import seqio
import tensorflow as tf

TASK_IDS = "task_ids"


class TaskIdFeatureConverter(seqio.EncDecFeatureConverter):
  """EncDec model features plus `task_ids` (int32 scalar per example).

  With `task_id`, every example gets that id (one converter per task); without it
  the task dataset must already carry `task_ids`.
  """

  def __init__(self, task_id: Optional[int] = None, pack: bool = False, **kwargs):
    if pack:
      raise ValueError(
          "Packing is not supported for prompt tuning: the prompt prefixes a single "
          "example, so packed examples would share it. Set pack=False.")
    kwargs.pop("passthrough_features", None)
    super().__init__(pack=False, passthrough_features={
        TASK_IDS: seqio.FeatureConverter.FeatureSpec(dtype=tf.int32)}, **kwargs)
    self.task_id = task_id

  def __call__(self, ds: tf.data.Dataset,
               task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
    if self.task_id is not None:
      task_id = tf.constant(self.task_id, tf.int32)
      ds = ds.map(lambda ex: {**ex, TASK_IDS: task_id})
    elif TASK_IDS not in ds.element_spec:
      raise ValueError(f"The dataset has no '{TASK_IDS}' feature; give the converter a "
                       "task_id or add the ids before converting.")
    ds = ds.map(lambda ex: {**ex, TASK_IDS: tf.reshape(tf.cast(ex[TASK_IDS], tf.int32), [1])})
    lengths = {k: v for k, v in task_feature_lengths.items() if k != TASK_IDS}
    ds = super().__call__(ds, {**lengths, TASK_IDS: 1})
    return ds.map(lambda ex: {**ex, TASK_IDS: ex[TASK_IDS][0]})

  def get_model_feature_lengths(self, task_feature_lengths):
    lengths = {k: v for k, v in task_feature_lengths.items() if k != TASK_IDS}
    return super().get_model_feature_lengths({**lengths, TASK_IDS: 1})
