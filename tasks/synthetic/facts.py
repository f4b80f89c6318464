"""Short facts about people, and questions whose answers are spans of those facts.

A fact is either 'mia sleeps in the garden' (an activity at a location) or 'tom buys a
kite' (a transaction with a thing). A question asks for one field of one fact: where,
who or what. Each distractor fact has another answer and shares one of the question's
key fields with the asked fact ('mia sings in the barn' beside 'where does mia
sleep?'), so a reader must bind the right name to the right verb, not just spot a
word or copy the only place in sight.
"""

import dataclasses
from typing import Optional

import numpy as np

from tasks.synthetic import lexicon


@dataclasses.dataclass(frozen=True)
class Fact:
  name: str
  verb: tuple[str, str, str]  # third person, base, -ing
  preposition: Optional[str]  # set for activities ('in'), None for transactions
  obj: str  # 'the garden' or 'a kite'

  @property
  def is_activity(self) -> bool:
    return self.preposition is not None


@dataclasses.dataclass(frozen=True)
class Question:
  fact: Fact
  asks: str  # 'where', 'who' or 'what'

  @property
  def answer(self) -> str:
    return self.fact.name if self.asks == "who" else self.fact.obj

  def key(self, fact: Fact) -> tuple:
    """The fields a fact must share with the asked fact to answer this question."""
    if self.asks == "who":
      return (fact.verb, fact.obj)
    return (fact.name, fact.verb)


def random_fact(rng: np.random.Generator, activity: Optional[bool] = None) -> Fact:
  if activity is None:
    activity = rng.random() < 0.5
  name = lexicon.pick(rng, lexicon.NAMES)
  if activity:
    preposition, place = lexicon.pick(rng, lexicon.LOCATIONS)
    return Fact(name, lexicon.pick(rng, lexicon.ACTIVITIES), preposition, place)
  return Fact(name, lexicon.pick(rng, lexicon.TRANSACTIONS), None,
              lexicon.pick(rng, lexicon.THINGS))


def vary(rng: np.random.Generator, fact: Fact, field: str) -> Fact:
  """The fact with `field` ('name', 'verb' or 'obj') replaced by a different word."""
  while True:
    other = random_fact(rng, fact.is_activity)
    if field == "obj":  # a place comes with its own preposition
      changed = dataclasses.replace(fact, preposition=other.preposition, obj=other.obj)
    else:
      changed = dataclasses.replace(fact, **{field: getattr(other, field)})
    if changed != fact:
      return changed


def random_question(rng: np.random.Generator, fact: Fact) -> Question:
  return Question(fact, lexicon.pick(rng, ("where" if fact.is_activity else "what", "who")))


def context(rng: np.random.Generator, question: Question, num_facts: int) -> list[Fact]:
  """The asked fact among distractors with another answer and one shared key field."""
  answer_field, key_fields = ("name", ("verb", "obj")) if question.asks == "who" else (
      "obj", ("name", "verb"))
  facts = [question.fact]
  while len(facts) < num_facts:
    distractor = vary(rng, question.fact, answer_field)
    distractor = vary(rng, distractor, lexicon.pick(rng, key_fields))
    if distractor not in facts:
      facts.append(distractor)
  return [facts[i] for i in rng.permutation(len(facts))]


def statement(fact: Fact, style: str = "plain") -> str:
  """'mia sleeps in the garden'; style 'fronted': 'in the garden, mia sleeps';
  style 'progressive': 'mia is sleeping in the garden'."""
  third, _, ing = fact.verb
  if style == "progressive":
    verb = f"is {ing}"
  else:
    verb = third
  if fact.is_activity:
    if style == "fronted":
      return f"{fact.preposition} {fact.obj}, {fact.name} {third}"
    return f"{fact.name} {verb} {fact.preposition} {fact.obj}"
  return f"{fact.name} {verb} {fact.obj}"


def ask(question: Question, style: str = "plain") -> str:
  """The question's words; style 'progressive' asks 'where is mia sleeping?'."""
  fact = question.fact
  third, base, ing = fact.verb
  if question.asks == "who":
    verb = f"is {ing}" if style == "progressive" else third
    place = f" {fact.preposition} {fact.obj}" if fact.is_activity else f" {fact.obj}"
    return f"who {verb}{place}?"
  wh = "where" if question.asks == "where" else "what"
  if style == "progressive":
    return f"{wh} is {fact.name} {ing}?"
  return f"{wh} does {fact.name} {base}?"
