"""Predictions from saved prompts: text in, text out. Inputs are tokenized, padded to
fixed shapes (so decoding compiles once per shape) and decoded on the run's mesh with
each example's own task prompt, so one batch may mix tasks. `mpt_jax.predict` and the
`mpt_jax.infer` command both go through `Predictor`.
"""

import dataclasses
from typing import Optional, Sequence, Union

import numpy as np
import seqio

from mpt_jax.backbone.loading import Backbone
from mpt_jax.backbone.loading import load_backbone
from mpt_jax.model.decoding import DecodingConfig
from mpt_jax.prompts import factories
from mpt_jax.prompts.loading import load_prompts_for
from mpt_jax.prompts.prompt_set import PromptSet
from mpt_jax.runtime import evaluation
from mpt_jax.runtime import setup as setup_lib
from mpt_jax.runtime.configs import ModelConfig
from mpt_jax.runtime.partitioning import Partitioner
from tasks import registry

Tasks = Union[None, str, Sequence[str]]


@dataclasses.dataclass(frozen=True)
class Prediction:
  text: str
  score: float  # log-likelihood of the predicted tokens under the model, EOS included
  tokens: tuple[int, ...]  # up to and including EOS


def task_vocabulary(task: str, feature: str = "inputs") -> Optional[seqio.Vocabulary]:
  """A registered SeqIO task's vocabulary of `feature`, or None if none is registered."""
  try:
    found = registry.get_task_or_mixture(task)
  except ValueError:
    return None
  return found.output_features[feature].vocabulary


def as_vocabulary(vocabulary) -> seqio.Vocabulary:
  """A seqio vocabulary, or the path of a SentencePiece model."""
  if isinstance(vocabulary, seqio.Vocabulary):
    return vocabulary
  return seqio.SentencePieceVocabulary(str(vocabulary))


def encode(texts: Sequence[str], vocabulary: seqio.Vocabulary,
           input_length: Optional[int] = None) -> np.ndarray:
  """int32 [N, input_length]: each text's ids, cut to leave room for EOS, then EOS, then 0s.
  Without `input_length`, the longest text rounded up to a power of two (at least 16),
  so that batches of similar texts share one compiled shape."""
  ids = [list(vocabulary.encode(text)) for text in texts]
  if input_length is None:
    longest = max(len(i) for i in ids) + 1
    input_length = max(16, 1 << (longest - 1).bit_length())
  tokens = np.zeros((len(ids), input_length), np.int32)
  for row, text_ids in enumerate(ids):
    text_ids = text_ids[:input_length - 1] + [vocabulary.eos_id]
    tokens[row, :len(text_ids)] = text_ids
  return tokens


def up_to_eos(tokens: np.ndarray, eos_id: int) -> list[int]:
  tokens = [int(t) for t in tokens]
  return tokens[:tokens.index(eos_id) + 1] if eos_id in tokens else tokens


def detokenize(tokens: np.ndarray, vocabulary: seqio.Vocabulary) -> tuple[str, list[int]]:
  """(the text, the ids up to and including EOS) of one decoded row."""
  ids = up_to_eos(tokens, vocabulary.eos_id)
  return vocabulary.decode([i for i in ids if i != vocabulary.eos_id]), ids


class Predictor:
  """Decodes with one prompt set on one backbone; build once, call many times.

  `batch_size` rows are decoded at a time (a short last batch is padded); inputs are
  token ids [N, L] from `encode`, or texts through `predict`.
  """

  def __init__(self, backbone: Backbone, prompts: PromptSet, *, max_decode_length: int = 64,
               batch_size: int = 32, decoding_config: Optional[DecodingConfig] = None,
               model: Optional[ModelConfig] = None, partitioner: Optional[Partitioner] = None):
    self.backbone, self.prompts, self.batch_size = backbone, prompts, batch_size
    self.decoding_config = decoding_config or DecodingConfig()
    partitioner = partitioner or Partitioner()
    if batch_size % partitioner.data_parallelism:
      raise ValueError(f"batch_size {batch_size} must be a multiple of the mesh's data "
                       f"parallelism, {partitioner.data_parallelism}.")
    setup = setup_lib.build_setup(backbone, prompts.task_names,
                                  factories.module_for(prompts), model or ModelConfig(),
                                  partitioner)
    self._trainable = partitioner.place(setup.initial_prompt, setup.prompt_shardings)
    self._decode = evaluation.mesh_decode_fn(setup, max_decode_length, self.decoding_config)

  def task_id(self, task: str) -> int:
    """The prompt a task is decoded with; a single prompt serves every task."""
    return 0 if self.prompts.kind == "single" else self.prompts.task_index(task)

  def task_ids(self, tasks: Tasks, count: int) -> np.ndarray:
    """One task id per input: `tasks` is one name for all, one per input, or None when
    the prompts hold one task."""
    if tasks is None:
      if self.prompts.kind != "single" and self.prompts.num_tasks != 1:
        raise ValueError(f"These prompts hold {self.prompts.num_tasks} tasks "
                         f"{list(self.prompts.task_names)}: name the task of the inputs.")
      return np.zeros(count, np.int32)
    names = [tasks] * count if isinstance(tasks, str) else list(tasks)
    if len(names) != count:
      raise ValueError(f"{len(names)} task names for {count} inputs: give one task for "
                       "all or one per input.")
    return np.array([self.task_id(name) for name in names], np.int32)

  def predict_tokens(self, encoder_input_tokens: np.ndarray, task_ids: np.ndarray,
                     batch_number: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(tokens [n, max_decode_length], log-likelihoods [n]) of at most batch_size rows."""
    count = len(encoder_input_tokens)
    if not 0 < count <= self.batch_size:
      raise ValueError(f"{count} rows for a batch of {self.batch_size}.")
    vocab_size = self.backbone.config.vocab_size
    if encoder_input_tokens.min() < 0 or encoder_input_tokens.max() >= vocab_size:
      raise ValueError(f"Input token ids {int(encoder_input_tokens.max())} are outside the "
                       f"backbone's vocabulary [0, {vocab_size}): the vocabulary does not "
                       "belong to this backbone.")
    pad = self.batch_size - count
    batch = {"encoder_input_tokens": np.asarray(encoder_input_tokens, np.int32),
             "task_ids": np.asarray(task_ids, np.int32)}
    batch = {k: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) for k, v in batch.items()}
    tokens, scores = self._decode(self._trainable, batch, batch_number)
    return tokens[:count], scores[:count]

  def predict(self, texts: Sequence[str], tasks: Tasks = None, *,
              vocabulary: Optional[seqio.Vocabulary] = None,
              input_length: Optional[int] = None) -> list[Prediction]:
    """Decodes texts (already in the task's input format), in order."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
      return []
    task_ids = self.task_ids(tasks, len(texts))
    vocabulary = vocabulary or self._vocabulary_of(tasks)
    tokens = encode(texts, vocabulary, input_length)
    predictions = []
    for number, start in enumerate(range(0, len(texts), self.batch_size)):
      rows = slice(start, start + self.batch_size)
      decoded, scores = self.predict_tokens(tokens[rows], task_ids[rows], number)
      for row, score in zip(decoded, scores):
        text, ids = detokenize(row, vocabulary)
        predictions.append(Prediction(text, float(score), tuple(ids)))
    return predictions

  def _vocabulary_of(self, tasks: Tasks) -> seqio.Vocabulary:
    names = sorted(set([tasks] if isinstance(tasks, str) else tasks or self.prompts.task_names))
    vocabularies = [task_vocabulary(name) for name in names]
    if None in vocabularies or any(v != vocabularies[0] for v in vocabularies):
      raise ValueError(f"Tasks {names} have no one registered SeqIO vocabulary: pass "
                       "vocabulary= (a seqio.Vocabulary or a SentencePiece model path).")
    return vocabularies[0]


def predict(backbone, prompts, texts: Sequence[str], tasks: Tasks = None, *,
            vocabulary=None, beam_size: int = 1, alpha: float = 0.6,
            temperature: float = 0.0, top_k: int = 0, seed: int = 0,
            max_decode_length: int = 64, input_length: Optional[int] = None,
            batch_size: int = 32) -> list[str]:
  """Predicted strings for `texts`, each decoded with its task's prompt.

  `backbone` is a Backbone or a path (as `load_backbone`), `prompts` a PromptSet or a
  path (as `load_prompts`); `tasks` one task name for all texts or one per text;
  `vocabulary` a seqio.Vocabulary or a SentencePiece model path (default: the tasks'
  registered SeqIO vocabulary). Decoding is greedy, beam search (beam_size > 1,
  length penalty alpha) or sampling (temperature > 0, top_k). For many calls, build a
  `Predictor` once instead.
  """
  backbone = backbone if isinstance(backbone, Backbone) else load_backbone(backbone)
  if not isinstance(prompts, PromptSet):
    prompts = load_prompts_for(prompts, backbone)
  config = DecodingConfig(beam_size=beam_size, alpha=alpha, temperature=temperature,
                          top_k=top_k, seed=seed)
  predictor = Predictor(backbone, prompts, max_decode_length=max_decode_length,
                        batch_size=batch_size, decoding_config=config)
  vocabulary = as_vocabulary(vocabulary) if vocabulary is not None else None
  return [p.text for p in predictor.predict(texts, tasks, vocabulary=vocabulary,
                                            input_length=input_length)]
