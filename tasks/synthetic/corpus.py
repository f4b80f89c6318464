"""Plain English-like text for pretraining a tiny backbone on the suite's world.

The corpus uses the tasks' lexicon and sentence shapes (scenes, reviews, facts about
people, questions) and states the lexicon's relations outright ('a dog is an
animal', 'large means big', 'big is the opposite of small'), the way web text
teaches a real T5 its word knowledge. It never shows a task's format: no field
prefixes, no label words, no pairs with their answers.
"""

import zlib

import numpy as np

from tasks.synthetic import cloze
from tasks.synthetic import facts
from tasks.synthetic import lexicon
from tasks.synthetic import nli
from tasks.synthetic import paraphrase
from tasks.synthetic import sampling
from tasks.synthetic import sentiment
from tasks.synthetic import suite

_CORPUS_KEY = zlib.crc32(b"corpus")


def _word_fact(rng: np.random.Generator) -> str:
  kind = rng.integers(6)
  if kind == 0:
    hypernym = lexicon.pick(rng, list(lexicon.NOUNS))
    noun = lexicon.pick(rng, lexicon.NOUNS[hypernym])
    return f"{lexicon.noun_phrase(noun)} is {lexicon.noun_phrase(hypernym)}."
  if kind in (1, 2):
    scales = lexicon.SCALES if kind == 1 else lexicon.OBJECT_SCALES
    poles = scales[lexicon.pick(rng, list(scales))]
    pole = rng.integers(2)
    word = lexicon.pick(rng, poles[pole])
    if rng.random() < 0.5 and len(poles[pole]) > 1:
      synonym = lexicon.pick(rng, [w for w in poles[pole] if w != word])
      return f"{word} means {synonym}."
    return f"{word} is the opposite of {lexicon.pick(rng, poles[1 - pole])}."
  if kind == 3:
    hypernym = lexicon.pick(rng, list(lexicon.VERBS))
    other = next(v for v in lexicon.VERBS if v != hypernym)
    verb = lexicon.pick(rng, lexicon.VERBS[hypernym])
    return (f"whoever {verb} {hypernym}, and whoever {verb} does not "
            f"{lexicon.pick(rng, lexicon.VERBS[other])[:-1]}.")
  if kind == 4:
    general = lexicon.pick(rng, list(lexicon.PLACES))
    place = lexicon.pick(rng, lexicon.PLACES[general]).split(" ", 1)[1]  # 'the park'
    return f"{place} is {general}."
  synonyms = lexicon.pick(rng, [s for s in lexicon.ACTIONS + lexicon.OBJECTS
                                + lexicon.RELATIONS if len(s) > 1])
  first, second = rng.choice(len(synonyms), 2, replace=False)
  return f"{synonyms[first]} means {synonyms[second]}."


def _review(rng: np.random.Generator) -> str:
  domain = lexicon.pick(rng, list(lexicon.ASPECTS))
  polarity = lexicon.pick(rng, sentiment.LABELS)
  text = sentiment.sentence(rng, domain, polarity) + "."
  if rng.random() < 0.3:
    again = "go there" if domain == "food" else "watch it"
    negation = "" if polarity == "positive" else "not "
    text += f" i would {negation}{again} again."
  return text


def sentence(rng: np.random.Generator) -> str:
  """One corpus item: a sentence, or two that belong together."""
  kind = rng.integers(6)
  if kind == 0:
    scene = nli.random_scene(rng)
    if rng.random() < 0.2:
      scene = nli.Scene(scene.noun, scene.adjective, scene.verb, None, negated=True)
    return nli.realise(scene, rng.random() < 0.5) + "."
  if kind == 1:
    return _word_fact(rng)
  if kind == 2:
    return _review(rng)
  if kind == 3:
    style = lexicon.pick(rng, ("plain", "fronted", "progressive"))
    return facts.statement(facts.random_fact(rng), style) + "."
  if kind == 4:
    return " ".join(cloze.statements(rng))
  if rng.random() < 0.5:
    return paraphrase.realise(rng, paraphrase.random_meaning(rng))
  question = facts.random_question(rng, facts.random_fact(rng))
  return facts.ask(question, lexicon.pick(rng, ("plain", "progressive")))


def pretraining_corpus(num_sentences: int, seed: int = 0) -> list[str]:
  """`num_sentences` corpus items; item i depends only on (seed, i)."""
  if num_sentences < 0:
    raise ValueError(f"num_sentences must be >= 0, got {num_sentences}.")
  return [sentence(np.random.default_rng([seed, _CORPUS_KEY, i]))
          for i in range(num_sentences)]


def passage(rng: np.random.Generator, max_bytes: int = sampling.MAX_INPUT_BYTES) -> str:
  """Corpus items joined while they fit `max_bytes`: one pretraining example."""
  text = sentence(rng)
  while True:
    following = sentence(rng)
    if len(text) + 1 + len(following) > max_bytes:
      return text
    text = f"{text} {following}"


def _make_passage(rng, label):
  del label
  text = passage(rng)
  return text, text


PRETRAIN = suite.TaskSpec("pretrain", _make_passage, None, "pretrain")
