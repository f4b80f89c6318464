"""The suite's small English lexicon: words and the relations between them.

Every task draws from these tables, so a skill learnt on one task (a hypernym, a
synonym, a word's polarity, a name's role) is the same skill on another. Words are
short and lower-case ASCII so inputs fit a byte vocabulary's budget.
"""

# Hypernym -> its members: "a dog runs" entails "an animal runs".
NOUNS = {
    "animal": ("dog", "cat", "horse", "fox", "goat", "duck"),
    "person": ("boy", "girl", "man", "woman", "child"),
}

# Adjective scales: two poles, each a set of synonyms. Same pole: synonyms; opposite
# poles: antonyms; different scales: compatible and unrelated.
SCALES = {
    "size": (("big", "large"), ("small", "little", "tiny")),
    "mood": (("happy", "glad"), ("sad", "unhappy")),
    "speed": (("fast", "quick"), ("slow", "sluggish")),
    "age": (("old", "elderly"), ("young", "youthful")),
    "noise": (("loud", "noisy"), ("quiet", "silent")),
}

# Verb classes (hypernym -> members). A member of one class contradicts the other
# class: an animal that sleeps does not run.
VERBS = {
    "moves": ("runs", "walks", "swims", "jumps"),
    "rests": ("sleeps", "naps"),
}
VERB_SYNONYMS = {"walks": ("strolls",), "jumps": ("leaps",), "sleeps": ("dozes",)}

# General place -> specific places (with their preposition). Specific places
# exclude each other; "in the park" entails "outside" and contradicts "inside".
PLACES = {
    "outside": ("in the park", "in the yard", "on the hill", "by the river"),
    "inside": ("in the barn", "in the house", "in the shed"),
}

# Paraphrase questions: verbs and nouns as synonym sets, adjective scales for objects.
ACTIONS = (("buy", "purchase"), ("fix", "repair", "mend"), ("clean", "wash"),
           ("sell",), ("paint",), ("find", "locate"))
OBJECTS = (("car", "auto"), ("bike", "bicycle"), ("sofa", "couch"), ("coat", "jacket"),
           ("cup", "mug"), ("lamp",), ("boat",))
OBJECT_SCALES = {
    "price": (("cheap", "inexpensive"), ("costly", "expensive")),
    "size": SCALES["size"],
    "age": (("old", "used"), ("new", "modern")),
    "noise": SCALES["noise"],
}

# Sentiment: polarity words shared by every domain, and per-domain ones.
POLARITY = {
    "general": {"positive": ("good", "great", "superb", "lovely", "wonderful"),
                "negative": ("bad", "awful", "poor", "terrible", "dreadful")},
    "film": {"positive": ("gripping", "moving", "witty", "funny", "clever"),
             "negative": ("dull", "boring", "tedious", "clumsy", "silly")},
    "food": {"positive": ("tasty", "fresh", "friendly", "cozy", "delicious"),
             "negative": ("stale", "rude", "greasy", "bland", "dirty")},
}
ASPECTS = {
    "film": ("film", "plot", "acting", "story", "ending", "script", "cast", "music"),
    "food": ("food", "soup", "pizza", "service", "waiter", "room", "bread", "coffee"),
}
# Verbs of liking, by polarity; "did not like" is the negated form.
FEELINGS = {"positive": ("loved", "enjoyed", "liked"), "negative": ("hated", "disliked")}
INTENSIFIERS = ("very", "really", "quite")

# People, places and things for the QA tasks.
NAMES = ("mia", "tom", "sam", "ana", "leo", "eva", "max", "zoe", "ben", "ivy", "kim",
         "raj")
# Verb forms: (third person, base, -ing).
ACTIVITIES = (("sleeps", "sleep", "sleeping"), ("sings", "sing", "singing"),
              ("reads", "read", "reading"), ("works", "work", "working"),
              ("dances", "dance", "dancing"), ("cooks", "cook", "cooking"),
              ("paints", "paint", "painting"), ("waits", "wait", "waiting"))
LOCATIONS = (("in", "the garden"), ("in", "the kitchen"), ("in", "the barn"),
             ("in", "the park"), ("in", "the library"), ("at", "the market"),
             ("on", "the beach"), ("in", "the forest"))
TRANSACTIONS = (("buys", "buy", "buying"), ("finds", "find", "finding"),
                ("sells", "sell", "selling"), ("carries", "carry", "carrying"))
# Time phrases that add detail without changing who did what where.
TIMES = ("at noon", "at night", "on sunday", "every day", "in the morning", "today")
THINGS = ("a hat", "a lamp", "a book", "a kite", "a key", "a coin", "a ring", "a drum",
          "an egg", "a map")

# Relations between two people, past tense, each with its synonyms (for ReCoRD-like
# queries that paraphrase the passage).
RELATIONS = (("helped", "assisted"), ("called", "phoned"), ("visited",),
             ("thanked",), ("taught", "tutored"), ("hugged", "embraced"),
             ("followed",), ("met",))


def pick(rng, options):
  """One of `options`, drawn with the caller's generator (never global randomness)."""
  return options[rng.integers(len(options))]


def article(word: str) -> str:
  return "an" if word[0] in "aeiou" else "a"


def noun_phrase(noun: str, adjective=None, definite: bool = False) -> str:
  """'a big dog', 'an animal', 'the old goat'."""
  head = f"{adjective} {noun}" if adjective else noun
  return f"{'the' if definite else article(head)} {head}"


def hypernym_of(word: str, table) -> str:
  """The key of `table` whose members include `word`."""
  for hypernym, members in table.items():
    if word in members:
      return hypernym
  raise KeyError(f"{word!r} is not a member of any class in {sorted(table)}.")


def pole_of(adjective: str, scales=SCALES) -> tuple[str, int]:
  """(scale name, pole index) of an adjective."""
  for name, poles in scales.items():
    for index, pole in enumerate(poles):
      if adjective in pole:
        return name, index
  raise KeyError(f"{adjective!r} is on no adjective scale.")


def all_adjectives(scales=SCALES) -> tuple[str, ...]:
  return tuple(word for poles in scales.values() for pole in poles for word in pole)
