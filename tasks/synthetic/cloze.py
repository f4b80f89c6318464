"""Cloze queries over a short passage of who-did-what-to-whom facts (ReCoRD-like).

The passage states relations between people ('mia helped tom'). The query restates
one of them with a person masked, in the active or passive voice and with the verb
or a synonym ('tom was assisted by @placeholder'), so the answer needs the relation's
meaning and the roles, not a copy of the surrounding words. The masked role is
always recoverable from exactly one passage fact.
"""

import dataclasses

import numpy as np

from tasks.synthetic import lexicon

PLACEHOLDER = "@placeholder"


@dataclasses.dataclass(frozen=True)
class Relation:
  agent: str
  verbs: tuple[str, ...]  # a synonym set; verbs[0] is the passage's word
  patient: str


def _relation(rng: np.random.Generator) -> Relation:
  agent, patient = rng.choice(len(lexicon.NAMES), 2, replace=False)
  return Relation(lexicon.NAMES[agent], lexicon.pick(rng, lexicon.RELATIONS),
                  lexicon.NAMES[patient])


def _answers(facts, verbs, role: str, other: str) -> set[str]:
  """Names that fill `role` in some fact with these verbs whose other role is `other`."""
  found = set()
  for fact in facts:
    if fact.verbs == verbs:
      if role == "agent" and fact.patient == other:
        found.add(fact.agent)
      if role == "patient" and fact.agent == other:
        found.add(fact.patient)
  return found


def _distractor(rng: np.random.Generator, name: str) -> Relation:
  """A random relation that, more often than not, involves `name` too."""
  relation = _relation(rng)
  if rng.random() < 0.6 and name not in (relation.agent, relation.patient):
    role = lexicon.pick(rng, ("agent", "patient"))
    relation = dataclasses.replace(relation, **{role: name})
  return relation


def example(rng: np.random.Generator, num_facts: int) -> tuple[str, str, str]:
  """(passage, query, answer)."""
  while True:
    asked = _relation(rng)
    role = lexicon.pick(rng, ("agent", "patient"))
    other = asked.patient if role == "agent" else asked.agent
    facts = [asked] + [_distractor(rng, other) for _ in range(num_facts - 1)]
    if _answers(facts, asked.verbs, role, other) == {getattr(asked, role)}:
      break
  verb = lexicon.pick(rng, asked.verbs)
  agent = PLACEHOLDER if role == "agent" else asked.agent
  patient = PLACEHOLDER if role == "patient" else asked.patient
  if rng.random() < 0.5:
    query = f"{agent} {verb} {patient}"
  else:
    query = f"{patient} was {verb} by {agent}"
  passage = ". ".join(f"{f.agent} {f.verbs[0]} {f.patient}" for f in
                      (facts[i] for i in rng.permutation(num_facts)))
  return passage + ".", query + ".", getattr(asked, role)


def statements(rng: np.random.Generator) -> list[str]:
  """A relation in the active and the passive voice, for the pretraining corpus."""
  relation = _relation(rng)
  verb = lexicon.pick(rng, relation.verbs)
  return [f"{relation.agent} {relation.verbs[0]} {relation.patient}.",
          f"{relation.patient} was {verb} by {relation.agent}."]
