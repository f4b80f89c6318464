"""Evaluation through seqio.Evaluator, for one prompt or a bank of them at once.

Each prompt (a run of a bank) has a `TaskEvaluator`: its tasks, each fed to the prompt
under the prompt's own task id, with batched decoding (greedy unless DecodingConfig
says otherwise), scoring, or rank classification (score every label string, predict
the most likely). `evaluate_bank` runs the evaluators of R prompts together: at each
call every prompt gets its next batch of rows, so the model runs one [R, B] batch
instead of R separate ones, and each prompt's outputs go to its own seqio metrics.
"""

import collections
import dataclasses
import functools
from typing import Callable, Iterator, Mapping, Optional, Sequence

import jax
import numpy as np
import seqio

from mpt_jax.model import decoding
from mpt_jax.model import models
from mpt_jax.runtime import steps
from mpt_jax.runtime.features import TaskIdFeatureConverter
from mpt_jax.runtime.inputs import MODEL_FEATURES
from mpt_jax.runtime.setup import RunSetup
from tasks import few_shot
from tasks import registry

# Host functions over a bank's global numpy batch: every array [R, B, ...] (R prompts,
# B rows each), held whole by every process.
BankPredictFn = Callable[[Mapping[str, np.ndarray]], np.ndarray]  # -> tokens [R, B, L]
BankScoreFn = Callable[[Mapping[str, np.ndarray]], np.ndarray]  # -> log-likelihood [R, B]
Results = dict[str, dict[str, float]]  # {task: {metric: value}}

PREDICTION = seqio.metrics.ModelOutputType.PREDICTION
SCORE = seqio.metrics.ModelOutputType.SCORE


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


def bank_eval_fns(setup: RunSetup, max_decode_length: int):
  """(predict, score) host functions of (the bank's trainable prompts, a sequence of R
  trees; a global numpy batch [R, B, ...]), jitted over the mesh once per R: prompt r
  decodes (as DecodingConfig is bound) or scores rows [r]."""
  config = decoding.DecodingConfig()
  partitioner, model = setup.partitioner, setup.model
  rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0)  # mesh_decode_fn's first

  def predict(trainables, frozen, batch):
    def one(trainable, rows):
      return model.predict_batch(models.merge(trainable, frozen), rows, max_decode_length,
                                 decoding_config=config, rng=rng)
    return jax.vmap(one)(steps.stack_runs(trainables), batch)

  def score(trainables, frozen, batch):
    return jax.vmap(lambda t, rows: model.score_batch(models.merge(t, frozen), rows))(
        steps.stack_runs(trainables), batch)

  def on_host(fn):
    @functools.lru_cache(maxsize=None)
    def jitted(runs: int):
      shardings = ((setup.prompt_shardings,) * runs, setup.frozen_shardings,
                   partitioner.bank_batch_sharding)
      return partitioner.jit(fn, in_shardings=shardings, out_shardings=partitioner.replicated)

    def run(trainables, batch):
      global_batch = partitioner.global_bank_batch(_local_rows(batch))
      return np.asarray(jitted(len(trainables))(tuple(trainables), setup.frozen,
                                                global_batch))
    return run
  return on_host(predict), on_host(score)


def _local_rows(batch):
  """This process's equal share of the rows (the last axis but the features') of a
  batch every process holds in full: axis 0 of a [B, ...] batch, 1 of a bank's."""
  count, index = jax.process_count(), jax.process_index()
  axis = 1 if batch["task_ids"].ndim == 2 else 0
  rows = batch["task_ids"].shape[axis] // count
  return {k: np.take(v, np.arange(index * rows, (index + 1) * rows), axis=axis)
          for k, v in batch.items()}


def _scalar(value) -> float:
  return float(getattr(value, "value", value))


@dataclasses.dataclass
class _Chunk:
  """One prompt's part of a bank call: up to `batch_size` examples of one task, to
  decode, to score, or (with `labels`) to score once per label for rank classification."""
  task: str
  indices: list[int]
  rows: dict[str, np.ndarray]  # model features of the examples (x labels)
  labels: Optional[np.ndarray] = None  # [C, L] label token ids

  def padded(self, count: int) -> dict[str, np.ndarray]:
    """Its rows, the last one repeated up to `count` (a call's fixed shape)."""
    return _padded(self.rows, count)


def _padded(rows: dict[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
  real = len(rows["task_ids"])
  return {k: np.concatenate([v, np.repeat(v[-1:], count - real, axis=0)])
          for k, v in rows.items()}


class EvalData:
  """A task split's examples as model features, read once: a seqio.Evaluator (which
  holds the targets and computes the metrics) and its examples in batches. One serves
  every prompt of a bank that evaluates the task, under each prompt's own task id."""

  def __init__(self, task_name: str, split: str, feature_lengths: Mapping[str, int],
               num_examples: Optional[int]):
    self.task_name = task_name
    self.evaluator = seqio.Evaluator(
        task_name, TaskIdFeatureConverter(0), eval_split=split,
        sequence_length=dict(feature_lengths), num_examples=num_examples,
        use_memory_cache=True, async_compute_metrics=False)
    self.outputs_needed = {metric.model_output_type
                           for metric in self.evaluator.eval_tasks[0].metric_objs}
    self._batches = {}

  def batches(self, batch_size: int) -> list[tuple[list[int], dict[str, np.ndarray]]]:
    """(indices, model features) of the examples, `batch_size` at a time."""
    if batch_size not in self._batches:
      ds = self.evaluator.cached_model_datasets[self.task_name].batch(batch_size)
      self._batches[batch_size] = [(index.tolist(), {k: features[k] for k in MODEL_FEATURES})
                                   for index, features in ds.as_numpy_iterator()]
    return self._batches[batch_size]

  def metrics(self, predictions: list, scores: list, step: Optional[int]) -> dict[str, float]:
    """{metric: value} of (index, tokens) predictions and (index, score) scores."""
    metrics, _ = self.evaluator.evaluate(compute_metrics=True, step=step,
                                         predict_fn=lambda _: predictions,
                                         score_fn=lambda _: scores)
    return {k: _scalar(v) for k, v in metrics.result()[self.task_name].items()}


class TaskEvaluator:
  """Evaluates a prompt on tasks, each fed to the prompt under its task id.

  Evaluators of one bank may share `data` ({key: EvalData}): a task split is then read
  once for all of them (a k-shot task's dev and test splits are its parent's).
  """

  def __init__(self, task_ids: Mapping[str, int], split: str,
               feature_lengths: Mapping[str, int], batch_size: int, *,
               rank_classification: bool = False, num_examples: Optional[int] = None,
               data: Optional[dict] = None):
    self.task_ids = dict(task_ids)
    self.split = split
    self.batch_size = batch_size
    self.feature_lengths = dict(feature_lengths)
    self.rank_classification = rank_classification
    data = {} if data is None else data
    self.data = {}
    for name in self.task_ids:
      registry.get_task_or_mixture(name)  # a clear error, or an on-demand k-shot task
      source = few_shot.eval_data_task(name, split)
      key = (source, split, tuple(sorted(self.feature_lengths.items())), num_examples)
      if key not in data:
        data[key] = EvalData(source, split, self.feature_lengths, num_examples)
      self.data[name] = data[key]

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

  @property
  def labels_per_example(self) -> int:
    """Rows a rank-classified example is scored as (1 without rank classification)."""
    return max([1] + [len(labels) for labels in map(self._label_tokens, self.task_ids)
                      if labels is not None])

  def _examples(self, name: str) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
    """(indices, model features) of a task's examples under the task's id here, a full
    batch at a time (the last example repeated in a short last batch)."""
    task_id = self.task_ids[name]
    for indices, rows in self.data[name].batches(self.batch_size):
      rows = _padded(rows, self.batch_size)
      yield indices, {**rows, "task_ids": np.full_like(rows["task_ids"], task_id)}

  def decode_chunks(self) -> Iterator[_Chunk]:
    """The examples to decode: tasks with prediction metrics and no rank classification."""
    for name, data in self.data.items():
      if PREDICTION in data.outputs_needed and self._label_tokens(name) is None:
        for indices, rows in self._examples(name):
          yield _Chunk(name, indices, rows)

  def score_chunks(self) -> Iterator[_Chunk]:
    """The rows to score: each example once per label (rank classification), and each
    example's own targets for tasks with score metrics."""
    for name, data in self.data.items():
      labels = self._label_tokens(name)
      for indices, rows in self._examples(name):
        if PREDICTION in data.outputs_needed and labels is not None:
          yield _Chunk(name, indices, _with_each_label(rows, labels), labels)
        if SCORE in data.outputs_needed:
          yield _Chunk(name, indices, rows)

  def results(self, predictions: Mapping[str, list], scores: Mapping[str, list],
              step: Optional[int] = None) -> Results:
    """{task: {metric: value}} from each task's (index, tokens) and (index, score) pairs."""
    return {name: data.metrics(predictions.get(name, []), scores.get(name, []), step)
            for name, data in self.data.items()}

  def evaluate(self, predict_fn: BankPredictFn, score_fn: BankScoreFn,
               step: Optional[int] = None) -> Results:
    """This prompt alone: `evaluate_bank` of a bank of one."""
    return evaluate_bank([self], predict_fn, score_fn, step)[0]


def _with_each_label(rows: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, np.ndarray]:
  """Every example repeated once per label, the label as its target."""
  count = len(labels)
  tiled = {k: np.repeat(v, count, axis=0) for k, v in rows.items()}
  targets = np.tile(labels, (len(rows["task_ids"]), 1))
  tiled["decoder_target_tokens"] = targets
  tiled["decoder_input_tokens"] = np.pad(targets[:, :-1], ((0, 0), (1, 0)))
  tiled["decoder_loss_weights"] = (targets > 0).astype(np.int32)
  return tiled


def _in_lockstep(streams: Sequence[Iterator[_Chunk]]) -> Iterator[list[Optional[_Chunk]]]:
  """Each stream's next chunk, together, until every stream is exhausted (None for a
  stream that already is)."""
  streams = list(streams)
  while True:
    chunks = [next(stream, None) for stream in streams]
    if all(chunk is None for chunk in chunks):
      return
    yield chunks


def _bank_batch(chunks: Sequence[Optional[_Chunk]], rows: int) -> dict[str, np.ndarray]:
  """[R, rows, ...]: each prompt's chunk padded to `rows`; an exhausted prompt gets a
  copy of another's rows under task id 0, decoded and thrown away."""
  filler = next(chunk for chunk in chunks if chunk is not None).padded(rows)
  filler = {**filler, "task_ids": np.zeros_like(filler["task_ids"])}
  parts = [chunk.padded(rows) if chunk is not None else filler for chunk in chunks]
  return {k: np.stack([part[k] for part in parts]) for k in parts[0]}


def bank_outputs(evaluators: Sequence[TaskEvaluator], predict_fn: BankPredictFn,
                 score_fn: BankScoreFn) -> list[tuple[dict, dict]]:
  """Each prompt's (predictions, scores): {task: [(index, tokens)]} and {task: [(index,
  score)]}, prompt r being evaluated by `evaluators[r]` and taking row r of every [R, B]
  batch of `predict_fn` and `score_fn`."""
  predictions = [collections.defaultdict(list) for _ in evaluators]
  scores = [collections.defaultdict(list) for _ in evaluators]
  decode_rows = max(e.batch_size for e in evaluators)
  for chunks in _in_lockstep([e.decode_chunks() for e in evaluators]):
    tokens = predict_fn(_bank_batch(chunks, decode_rows))
    for r, chunk in enumerate(chunks):
      if chunk is not None:
        predictions[r][chunk.task].extend(zip(chunk.indices, tokens[r].tolist()))
  score_rows = max(e.batch_size * e.labels_per_example for e in evaluators)
  for chunks in _in_lockstep([e.score_chunks() for e in evaluators]):
    scored = score_fn(_bank_batch(chunks, score_rows))
    for r, chunk in enumerate(chunks):
      if chunk is None:
        continue
      if chunk.labels is None:
        scores[r][chunk.task].extend(zip(chunk.indices, scored[r].tolist()))
      else:  # rank classification: the likeliest label is the prediction
        by_label = scored[r][:len(chunk.indices) * len(chunk.labels)].reshape(
            len(chunk.indices), len(chunk.labels))
        best = chunk.labels[np.argmax(by_label, axis=1)]
        predictions[r][chunk.task].extend(zip(chunk.indices, best.tolist()))
  return list(zip(predictions, scores))


def evaluate_bank(evaluators: Sequence[TaskEvaluator], predict_fn: BankPredictFn,
                  score_fn: BankScoreFn, step: Optional[int] = None) -> list[Results]:
  """Each prompt's {task: {metric: value}} (see `bank_outputs`)."""
  outputs = bank_outputs(evaluators, predict_fn, score_fn)
  return [evaluator.results(*output, step) for evaluator, output in zip(evaluators, outputs)]


def average_score(results: Mapping[str, Mapping[str, float]]) -> float:
  """The mean over tasks of each task's mean metric (how the paper averages)."""
  return float(np.mean([np.mean(list(m.values())) for m in results.values() if m]))
