"""Review sentences whose polarity follows from word polarity, negation and contrast.

A clause is '(i thought) the plot was (very) dull', 'the plot was not dull'
(negation flips it) or 'i (did not) like(d) the plot'. A sentence joins one or two
clauses: with 'and' both agree; with 'but' or 'although' they disagree, and the main
clause (after 'but', after the 'although' clause) decides. Polarity words come from
the domain's own list or from the list every domain shares, so a model that learnt
'awful', negation and 'but' on films can carry them to restaurants.
"""

import numpy as np

from tasks.synthetic import lexicon

LABELS = ("positive", "negative")


def _flip(polarity: str) -> str:
  return LABELS[1 - LABELS.index(polarity)]


def clause(rng: np.random.Generator, domain: str, aspect: str, polarity: str) -> str:
  """One clause about `aspect` that expresses `polarity` in words of `domain`."""
  negated = rng.random() < 0.3
  word_polarity = _flip(polarity) if negated else polarity
  if rng.random() < 0.2:
    if negated:
      verb = "did not like" if word_polarity == "positive" else "did not mind"
    else:
      verb = lexicon.pick(rng, lexicon.FEELINGS[word_polarity])
    return f"i {verb} the {aspect}"
  source = "general" if rng.random() < 0.4 else domain
  adjective = lexicon.pick(rng, lexicon.POLARITY[source][word_polarity])
  if negated:
    adjective = f"not {adjective}"
  elif rng.random() < 0.3:
    adjective = f"{lexicon.pick(rng, lexicon.INTENSIFIERS)} {adjective}"
  opinion = "i thought " if rng.random() < 0.25 else ""
  return f"{opinion}the {aspect} was {adjective}"


def sentence(rng: np.random.Generator, domain: str, polarity: str) -> str:
  """A one- or two-clause sentence about `domain` whose overall polarity is `polarity`."""
  if polarity not in LABELS:
    raise ValueError(f"Unknown polarity {polarity!r}; use one of {LABELS}.")
  if domain not in lexicon.ASPECTS:
    raise ValueError(f"Unknown domain {domain!r}; use one of {sorted(lexicon.ASPECTS)}.")
  shape = rng.choice(4, p=(0.1, 0.3, 0.3, 0.3))  # few one-clause sentences: they repeat
  first, second = rng.choice(lexicon.ASPECTS[domain], 2, replace=False)
  main = clause(rng, domain, str(first), polarity)
  if shape == 0:
    return main
  if shape == 1:
    return f"{clause(rng, domain, str(second), polarity)} and {main}"
  other = clause(rng, domain, str(second), _flip(polarity))
  if shape == 2:
    return f"{other} but {main}"
  return f"although {other}, {main}"
