"""Question pairs that ask the same thing in other words, or nearly the same words
for a different thing (QQP-like).

A question has four slots: its frame ('where can i'), an action, an adjective and an
object. A duplicate rewords every slot freely within its synonym set (at least one
word changes); a non-duplicate also rewords, but changes exactly one slot's meaning
(another frame, action or object, or the adjective's antonym), so word overlap is
about the same for both labels and only synonymy tells them apart.
"""

import numpy as np

from tasks.synthetic import lexicon

LABELS = ("duplicate", "not_duplicate")

# Frames with the same meaning, grouped; groups differ in what they ask.
FRAMES = (("where can i", "where do i", "where should i"),
          ("how can i", "how do i"),
          ("when should i", "when can i"),
          ("why should i", "why would i"))
SLOTS = ("frame", "action", "adjective", "object")


def _adjective_sets():
  return tuple(pole for poles in lexicon.OBJECT_SCALES.values() for pole in poles)


def _antonyms(pole):
  for poles in lexicon.OBJECT_SCALES.values():
    if pole in poles:
      return poles[1 - poles.index(pole)]
  raise KeyError(pole)


def _choices():
  return {"frame": FRAMES, "action": lexicon.ACTIONS,
          "adjective": _adjective_sets(), "object": lexicon.OBJECTS}


def random_meaning(rng: np.random.Generator) -> dict:
  """A synonym set per slot: what a question asks, before it is worded."""
  return {slot: lexicon.pick(rng, options) for slot, options in _choices().items()}


def realise(rng: np.random.Generator, meaning: dict) -> str:
  """A question whose every slot is a random word from the slot's synonym set."""
  words = {slot: lexicon.pick(rng, synonyms) for slot, synonyms in meaning.items()}
  return (f"{words['frame']} {words['action']} "
          f"{lexicon.noun_phrase(words['object'], words['adjective'])}?")


def pair(rng: np.random.Generator, label: str) -> tuple[str, str]:
  """Two questions that are paraphrases iff `label` is 'duplicate'."""
  if label not in LABELS:
    raise ValueError(f"Unknown paraphrase label {label!r}; use one of {LABELS}.")
  choices = _choices()
  meaning = random_meaning(rng)
  other = dict(meaning)
  if label == "not_duplicate":
    slot = lexicon.pick(rng, SLOTS)
    if slot == "adjective":
      other[slot] = _antonyms(meaning[slot])
    else:
      other[slot] = lexicon.pick(rng, [s for s in choices[slot] if s != meaning[slot]])
  while True:
    first, second = realise(rng, meaning), realise(rng, other)
    if first != second:
      return first, second
