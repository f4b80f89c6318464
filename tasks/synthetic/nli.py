"""Premise/hypothesis pairs whose label follows from lexical relations.

A premise is a scene (noun, optional adjective, verb, optional place). The hypothesis
edits each slot by one relation to the premise's word:
  SAME  same word or a synonym              (entailed)
  GEN   hypernym, or the modifier dropped   (entailed: says less)
  SPEC  hyponym, or a modifier added        (neutral: says more)
  CONF  antonym or an exclusive word        (contradiction, same-event reading)
A negated hypothesis ("does not move") flips its verb relation: negating an entailed
verb contradicts, negating a contradicting verb is entailed. Labels are composed so
every pair is unambiguous: a contradiction has one CONF slot and no SPEC slot, a
neutral pair has a SPEC slot and no CONF slot. Negation, dropped and changed words
appear under every label, so no single surface cue gives the label away.
"""

import dataclasses
from typing import Optional

import numpy as np

from tasks.synthetic import lexicon

SAME, GEN, SPEC, CONF = "same", "gen", "spec", "conf"
SLOTS = ("noun", "adjective", "verb", "place")
LABELS = ("entailment", "neutral", "contradiction")


@dataclasses.dataclass(frozen=True)
class Scene:
  noun: str
  adjective: Optional[str]
  verb: str
  place: Optional[str]
  negated: bool = False


def realise(scene: Scene, definite: bool = False, place_first: bool = False) -> str:
  """The scene as a sentence: 'a small dog runs in the park'."""
  subject = lexicon.noun_phrase(scene.noun, scene.adjective, definite)
  verb = f"does not {scene.verb[:-1]}" if scene.negated else scene.verb
  if scene.place and place_first:
    return f"{scene.place}, {subject} {verb}"
  return " ".join(part for part in (subject, verb, scene.place) if part)


def _members(table) -> list[str]:
  return [word for members in table.values() for word in members]


def _noun_options(noun):
  if noun in lexicon.NOUNS:
    return {SAME: [noun], SPEC: list(lexicon.NOUNS[noun])}
  return {SAME: [noun], GEN: [lexicon.hypernym_of(noun, lexicon.NOUNS)]}


def _adjective_options(adjective):
  everything = list(lexicon.all_adjectives())
  if adjective is None:
    return {SAME: [None], SPEC: everything}
  scale, pole = lexicon.pole_of(adjective)
  poles = lexicon.SCALES[scale]
  other_scales = [w for w in everything if w not in poles[0] + poles[1]]
  return {SAME: list(poles[pole]), GEN: [None], SPEC: other_scales,
          CONF: list(poles[1 - pole])}


def _verb_options(verb):
  if verb in lexicon.VERBS:
    other = next(v for v in lexicon.VERBS if v != verb)
    return {SAME: [verb], SPEC: list(lexicon.VERBS[verb]),
            CONF: [other] + list(lexicon.VERBS[other])}
  hypernym = lexicon.hypernym_of(verb, lexicon.VERBS)
  other = next(v for v in lexicon.VERBS if v != hypernym)
  return {SAME: [verb] + list(lexicon.VERB_SYNONYMS.get(verb, ())), GEN: [hypernym],
          CONF: [other] + list(lexicon.VERBS[other])}


def _place_options(place):
  generals = list(lexicon.PLACES)
  specifics = _members(lexicon.PLACES)
  if place is None:
    return {SAME: [None], SPEC: generals + specifics}
  if place in lexicon.PLACES:
    other = next(g for g in generals if g != place)
    return {SAME: [place], GEN: [None], SPEC: list(lexicon.PLACES[place]),
            CONF: [other] + list(lexicon.PLACES[other])}
  general = lexicon.hypernym_of(place, lexicon.PLACES)
  other = next(g for g in generals if g != general)
  return {SAME: [place], GEN: [None, general],
          CONF: [p for p in specifics if p != place] + [other]}


def _options(premise: Scene):
  return {"noun": _noun_options(premise.noun),
          "adjective": _adjective_options(premise.adjective),
          "verb": _verb_options(premise.verb),
          "place": _place_options(premise.place)}


def random_scene(rng: np.random.Generator) -> Scene:
  """A premise: specific words mostly, a hypernym or a missing modifier sometimes."""
  pick = lexicon.pick
  noun = pick(rng, list(lexicon.NOUNS) if rng.random() < 0.25 else _members(lexicon.NOUNS))
  adjective = pick(rng, lexicon.all_adjectives()) if rng.random() < 0.6 else None
  verb = pick(rng, list(lexicon.VERBS) if rng.random() < 0.2 else _members(lexicon.VERBS))
  roll = rng.random()
  if roll < 0.55:
    place = pick(rng, _members(lexicon.PLACES))
  elif roll < 0.7:
    place = pick(rng, list(lexicon.PLACES))
  else:
    place = None
  return Scene(noun, adjective, verb, place)


def _plan(rng, options, label: str) -> tuple[dict[str, str], bool]:
  """Chooses a relation per slot, and whether to negate, so that `label` holds."""
  negate = rng.random() < 0.3
  if negate:
    # The hypothesis drops the place (see `pair`): the negation's scope is the verb.
    fixed = {"place": GEN if GEN in options["place"] else SAME}
    if label == "entailment":
      fixed["verb"] = CONF
    elif label == "contradiction":
      fixed["verb"] = lexicon.pick(rng, [r for r in (SAME, GEN) if r in options["verb"]])
    else:  # neutral: a negated hyponym verb, or a negated conflict plus a new detail
      if SPEC in options["verb"] and rng.random() < 0.5:
        fixed["verb"] = SPEC
      else:
        fixed["verb"] = CONF
        detail = [s for s in ("noun", "adjective") if SPEC in options[s]]
        fixed[lexicon.pick(rng, detail)] = SPEC
  else:
    wanted = {"entailment": None, "neutral": SPEC, "contradiction": CONF}[label]
    fixed = {}
    if wanted:
      fixed[lexicon.pick(rng, [s for s in SLOTS if wanted in options[s]])] = wanted
  plan = {}
  for slot in SLOTS:
    plan[slot] = fixed.get(slot) or lexicon.pick(
        rng, [r for r in (SAME, SAME, GEN) if r in options[slot]])
  return plan, negate


def pair(rng: np.random.Generator, label: str) -> tuple[Scene, Scene]:
  """A (premise, hypothesis) pair whose NLI label is `label`."""
  if label not in LABELS:
    raise ValueError(f"Unknown NLI label {label!r}; use one of {LABELS}.")
  while True:
    premise = random_scene(rng)
    options = _options(premise)
    plan, negate = _plan(rng, options, label)
    words = {slot: lexicon.pick(rng, options[slot][plan[slot]]) for slot in SLOTS}
    if negate:
      words["place"] = None
    hypothesis = Scene(negated=negate, **words)
    if hypothesis != premise:  # an identical pair is entailment, but teaches nothing
      return premise, hypothesis
