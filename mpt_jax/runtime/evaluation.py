"""Evaluation through seqio.Evaluator: one evaluator per task, each feeding that
task's id to the prompt, with batched decoding (greedy unless DecodingConfig says
otherwise), scoring, or rank
classification (score every label string, predict the most likely), run on the
mesh by jitted predict and score functions.
"""

import logging
from typing import Callable, Mapping, Optional

import jax
import numpy as np
import seqio

from mpt_jax.model import decoding
from mpt_jax.model import models
from mpt_jax.runtime.features import TaskIdFeatureConverter
from mpt_jax.runtime.inputs import MODEL_FEATURES
from mpt_jax.runtime.setup import RunSetup
from tasks import registry

# Host functions over global numpy batches (every process holds the whole batch).
PredictFn = Callable[[Mapping[str, np.ndarray]], np.ndarray]  # -> tokens [B, L]
ScoreFn = Callable[[Mapping[str, np.ndarray]], np.ndarray]  # -> log-likelihood [B]


def mesh_decode_fn(setup: RunSetup, max_decode_length: int,
                   decoding_config: Optional[decoding.DecodingConfig] = None):
  """A host function (trainable prompt, global numpy batch, batch number) -> (tokens
  [B, L], log-likelihoods [B]), jitted once over the run's mesh per batch shape.
  Sampling draws from a key of (seed, batch number), so a rerun draws the same."""
  config = decoding_config or decoding.DecodingConfig()
  partitioner = setup.partitioner
  shardings = (setup.prompt_shardings, setup.frozen_shardings, partitioner.batch_sharding,
               partitioner.replicated)
  jitted = partitioner.jit(lambda t, f, b, rng: setup.model.predict_batch_with_aux(
      models.merge(t, f), b, max_decode_length, decoding_config=config, rng=rng),
      in_shardings=shardings, out_shardings=partitioner.replicated)
  seed = jax.random.PRNGKey(config.seed)

  def run(trainable, batch, batch_number: int = 0):
    rng = np.asarray(jax.random.fold_in(seed, batch_number))
    global_batch = partitioner.global_batch(_local_rows(batch))
    tokens, aux = jitted(trainable, setup.frozen, global_batch, rng)
    return np.asarray(tokens), np.asarray(aux["scores"])
  return run


def mesh_eval_fns(setup: RunSetup, max_decode_length: int):
  """(predict, score) host functions of (trainable prompt, global numpy batch), each
  jitted once over the run's mesh; predict decodes as `DecodingConfig` is bound."""
  partitioner = setup.partitioner
  decode = mesh_decode_fn(setup, max_decode_length)
  shardings = (setup.prompt_shardings, setup.frozen_shardings, partitioner.batch_sharding)
  score = partitioner.jit(lambda t, f, b: setup.model.score_batch(models.merge(t, f), b),
                          in_shardings=shardings, out_shardings=partitioner.replicated)

  def score_on_host(trainable, batch):
    global_batch = partitioner.global_batch(_local_rows(batch))
    return np.asarray(score(trainable, setup.frozen, global_batch))
  return (lambda trainable, batch: decode(trainable, batch)[0]), score_on_host


def _local_rows(batch):
  """This process's equal share of a batch every process holds in full."""
  count, index = jax.process_count(), jax.process_index()
  rows = len(next(iter(batch.values()))) // count
  return {k: v[index * rows:(index + 1) * rows] for k, v in batch.items()}


def _batches(ds, batch_size: int):
  """(indices, batch padded to batch_size, number of real rows) over an enumerated ds."""
  for index, features in ds.batch(batch_size).as_numpy_iterator():
    real = len(index)
    batch = {k: features[k] for k in MODEL_FEATURES}
    if real < batch_size:
      batch = {k: np.concatenate([v, np.repeat(v[-1:], batch_size - real, axis=0)])
               for k, v in batch.items()}
    yield index, batch, real


def _scalar(value) -> float:
  return float(getattr(value, "value", value))


class TaskEvaluator:
  """Evaluates a prompt on tasks, each fed to the prompt under its task id."""

  def __init__(self, task_ids: Mapping[str, int], split: str,
               feature_lengths: Mapping[str, int], batch_size: int, *,
               rank_classification: bool = False, num_examples: Optional[int] = None):
    self.split = split
    self.batch_size = batch_size
    self.feature_lengths = dict(feature_lengths)
    self.rank_classification = rank_classification
    self.evaluators = {}
    for name, task_id in task_ids.items():
      registry.get_task_or_mixture(name)  # a clear error, or an on-demand k-shot task
      converter = TaskIdFeatureConverter(task_id)
      self.evaluators[name] = seqio.Evaluator(
          name, converter, eval_split=split, sequence_length=self.feature_lengths,
          num_examples=num_examples, use_memory_cache=True, async_compute_metrics=False)

  def _label_tokens(self, task_name: str) -> Optional[np.ndarray]:
    """[C, target length] token ids (+EOS, padded) of a task's labels, if it has any."""
    label_ids = registry.label_token_ids(task_name)
    if not self.rank_classification or not label_ids:
      return None
    eos = seqio.get_mixture_or_task(task_name).output_features["targets"].vocabulary.eos_id
    length = self.feature_lengths["targets"]
    rows = np.zeros((len(label_ids), length), np.int32)
    for i, ids in enumerate(label_ids):
      ids = ids[: length - 1] + [eos]
      rows[i, : len(ids)] = ids
    return rows

  def _rank_classify(self, score_fn: ScoreFn, batch, labels: np.ndarray) -> np.ndarray:
    """Label token ids [B, L] of the most likely label of each example."""
    count = len(labels)
    tiled = {k: np.repeat(v, count, axis=0) for k, v in batch.items()}
    targets = np.tile(labels, (len(batch["task_ids"]), 1))
    tiled["decoder_target_tokens"] = targets
    tiled["decoder_input_tokens"] = np.pad(targets[:, :-1], ((0, 0), (1, 0)))
    tiled["decoder_loss_weights"] = (targets > 0).astype(np.int32)
    scores = score_fn(tiled).reshape(-1, count)
    return labels[np.argmax(scores, axis=1)]

  def evaluate(self, predict_fn: PredictFn, score_fn: ScoreFn,
               step: Optional[int] = None) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} on this evaluator's split."""
    results = {}
    for name, evaluator in self.evaluators.items():
      labels = self._label_tokens(name)

      def predict(ds, labels=labels):
        outputs = []
        for index, batch, real in _batches(ds, self.batch_size):
          tokens = (self._rank_classify(score_fn, batch, labels) if labels is not None
                    else predict_fn(batch))
          outputs.extend(zip(index.tolist(), np.asarray(tokens)[:real].tolist()))
        return outputs

      def score(ds):
        outputs = []
        for index, batch, real in _batches(ds, self.batch_size):
          outputs.extend(zip(index.tolist(), np.asarray(score_fn(batch))[:real].tolist()))
        return outputs

      metrics, _ = evaluator.evaluate(compute_metrics=True, step=step, predict_fn=predict,
                                      score_fn=score)
      results[name] = {k: _scalar(v) for k, v in metrics.result()[name].items()}
      logging.info("%s %s: %s", self.split, name, results[name])
    return results


def average_score(results: Mapping[str, Mapping[str, float]]) -> float:
  """The mean over tasks of each task's mean metric (how the paper averages)."""
  return float(np.mean([np.mean(list(m.values())) for m in results.values() if m]))
