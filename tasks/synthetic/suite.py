"""The suite's tasks: each one's text format, labels, metric and role.

A task's `make(rng, label)` returns one (inputs, targets) pair; `label` is the class
the example must have (classification) or None (QA). Which label, which random
stream and which split are decided by `sampling`, so formats stay pure text.
"""

import dataclasses
from typing import Callable, Optional

import numpy as np

from tasks.synthetic import cloze
from tasks.synthetic import facts
from tasks.synthetic import lexicon
from tasks.synthetic import nli
from tasks.synthetic import paraphrase
from tasks.synthetic import sentiment

Maker = Callable[[np.random.Generator, Optional[str]], tuple[str, str]]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  name: str  # without the registration prefix, e.g. 'nli'
  make: Maker
  labels: Optional[tuple[str, ...]]  # None for QA tasks (metric: exact match and F1)
  role: str  # 'source' or 'target'


def _nli(rng, label):
  premise, hypothesis = nli.pair(rng, label)
  return f"premise: {nli.realise(premise)}. hypothesis: {nli.realise(hypothesis)}.", label


def _rte(rng, label):
  """Two-way, definite articles, sometimes a fronted place: the NLI skill, reworded."""
  if label == "not_entailment":
    three_way = "neutral" if rng.random() < 0.5 else "contradiction"
  else:
    three_way = label
  first, second = nli.pair(rng, three_way)
  text = (f"sentence1: {nli.realise(first, True, rng.random() < 0.5)}. "
          f"sentence2: {nli.realise(second, True)}.")
  return text, label


def _qnli(rng, label):
  """Does the sentence answer the question? No: a near miss (one field differs).
  A time phrase sometimes adds detail the question does not ask about."""
  question = facts.random_question(rng, facts.random_fact(rng))
  fact = question.fact
  if label == "not_entailment":
    while question.key(fact) == question.key(question.fact):
      fact = facts.vary(rng, question.fact, lexicon.pick(rng, ("name", "verb", "obj")))
  sentence = facts.statement(fact)
  if rng.random() < 0.7:
    sentence = f"{sentence} {lexicon.pick(rng, lexicon.TIMES)}"
  return f"question: {facts.ask(question)} sentence: {sentence}.", label


def _paraphrase(rng, label):
  first, second = paraphrase.pair(rng, label)
  return f"question1: {first} question2: {second}", label


def _sentiment(rng, label):
  return f"sentence: {sentiment.sentence(rng, 'film', label)}.", label


def _reviews(rng, label):
  return f"review: {sentiment.sentence(rng, 'food', label)}.", label


def _squad(rng, label):
  del label
  question = facts.random_question(rng, facts.random_fact(rng))
  story = facts.context(rng, question, 2 + rng.integers(2))
  text = ". ".join(facts.statement(f) for f in story)
  return f"question: {facts.ask(question)} context: {text}.", question.answer


def _mrqa(rng, label):
  """Context first, other sentence shapes, progressive questions: SQuAD's skill."""
  del label
  question = facts.random_question(rng, facts.random_fact(rng))
  story = facts.context(rng, question, 2 + rng.integers(2))
  styles = ("plain", "fronted", "progressive")
  text = ". ".join(facts.statement(f, lexicon.pick(rng, styles)) for f in story)
  style = "progressive" if rng.random() < 0.5 else "plain"
  return f"context: {text}. question: {facts.ask(question, style)}", question.answer


def _cloze(rng, label):
  del label
  passage, query, answer = cloze.example(rng, 2 + rng.integers(2))
  return f"passage: {passage} query: {query}", answer


TASKS = (  # shaped like MNLI, QNLI, QQP, SST-2, SQuAD, ReCoRD; then RTE, Yelp, MRQA
    TaskSpec("nli", _nli, nli.LABELS, "source"),
    TaskSpec("qnli", _qnli, ("entailment", "not_entailment"), "source"),
    TaskSpec("paraphrase", _paraphrase, paraphrase.LABELS, "source"),
    TaskSpec("sentiment", _sentiment, sentiment.LABELS, "source"),
    TaskSpec("squad", _squad, None, "source"),
    TaskSpec("cloze", _cloze, None, "source"),
    TaskSpec("rte", _rte, ("entailment", "not_entailment"), "target"),
    TaskSpec("reviews", _reviews, sentiment.LABELS, "target"),
    TaskSpec("mrqa", _mrqa, None, "target"),
)
BY_NAME = {spec.name: spec for spec in TASKS}
