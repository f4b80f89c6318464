"""The synthetic suite: determinism, disjoint splits, labels that are right, SeqIO
registration, metrics, and span corruption that the targets undo."""

import collections
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import seqio

from tasks import registry
import tasks.synthetic as synthetic
from tasks.synthetic import cloze
from tasks.synthetic import corpus
from tasks.synthetic import facts
from tasks.synthetic import lexicon
from tasks.synthetic import metrics
from tasks.synthetic import nli
from tasks.synthetic import paraphrase
from tasks.synthetic import registration
from tasks.synthetic import sampling
from tasks.synthetic import span_corruption
from tasks.synthetic import suite

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {"source": registration.SOURCE_SIZES, "target": registration.TARGET_SIZES}


@pytest.fixture(scope="module")
def default_splits():
  """Every task's default-size splits: {task: {split: [example, ...]}}."""
  return {spec.name: {split: list(sampling.examples(spec, split, size, 0))
                      for split, size in SIZES[spec.role].items()}
          for spec in suite.TASKS}


def _rng(i):
  return np.random.default_rng([7, i])


# Determinism ------------------------------------------------------------------------


def test_examples_are_a_pure_function_of_task_split_index_seed():
  for spec in suite.TASKS:
    first = list(sampling.examples(spec, "validation", 12, seed=3))
    assert first == list(sampling.examples(spec, "validation", 12, seed=3))
    # Any index alone, in any order, gives the same example.
    for index in (11, 0, 5):
      assert sampling.example(spec, "validation", index, seed=3) == first[index]
    assert first != list(sampling.examples(spec, "validation", 12, seed=4))


def test_examples_do_not_depend_on_the_process():
  """A fresh interpreter with another hash seed draws the same examples."""
  script = ("import json; from tasks.synthetic import suite, sampling; print(json.dumps("
            "{s.name: list(sampling.examples(s, 'train', 5, 0)) for s in suite.TASKS}))")
  env = dict(os.environ, PYTHONHASHSEED="12345", TF_CPP_MIN_LOG_LEVEL="3")
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, check=True,
                       capture_output=True, text=True).stdout
  here = {s.name: list(sampling.examples(s, "train", 5, 0)) for s in suite.TASKS}
  assert json.loads(out.strip().splitlines()[-1]) == here


def test_pretraining_corpus_is_deterministic_and_leaks_no_task_format():
  sentences = corpus.pretraining_corpus(2000, seed=0)
  assert sentences == corpus.pretraining_corpus(2000, seed=0)
  assert sentences[:50] != corpus.pretraining_corpus(50, seed=1)
  assert sentences[:50] == corpus.pretraining_corpus(50, seed=0)
  text = " ".join(sentences)
  assert text.isascii()
  for field in ("premise:", "hypothesis:", "question:", "question1:", "sentence:",
                "sentence1:", "context:", "passage:", "query:", "review:", "@placeholder"):
    assert field not in text
  words = set(re.findall(r"[\w@]+", text))
  labels = {label for spec in suite.TASKS for label in spec.labels or ()}
  assert not words & labels
  # It states the lexicon's relations, which the NLI-like tasks test.
  assert "a dog is an animal." in sentences
  assert any(re.fullmatch(r"\w+ is the opposite of \w+\.", s) for s in sentences)


# Splits, budgets, balance -----------------------------------------------------------


def test_splits_are_disjoint_and_mostly_free_of_repeats(default_splits):
  for name, splits in default_splits.items():
    inputs = {split: {e["inputs"] for e in examples} for split, examples in splits.items()}
    assert not inputs["train"] & inputs["validation"], name
    assert not inputs["train"] & inputs["test"], name
    assert not inputs["validation"] & inputs["test"], name
    assert len(inputs["train"]) > 0.9 * len(splits["train"]), name


def test_inputs_and_targets_fit_the_byte_budget(default_splits):
  for name, splits in default_splits.items():
    for examples in splits.values():
      assert max(len(e["inputs"].encode()) for e in examples) <= sampling.MAX_INPUT_BYTES
      assert max(len(e["targets"].encode()) for e in examples) <= sampling.MAX_TARGET_BYTES
      assert all(e["inputs"].isascii() for e in examples), name


def test_labels_are_balanced_and_answers_varied(default_splits):
  for spec in suite.TASKS:
    for split, examples in default_splits[spec.name].items():
      counts = collections.Counter(e["targets"] for e in examples)
      if spec.labels:
        assert set(counts) == set(spec.labels)
        assert max(counts.values()) - min(counts.values()) <= 1, (spec.name, counts)
      else:  # no constant answer is worth much
        assert max(counts.values()) < 0.15 * len(examples), (spec.name, split, counts)


def test_unknown_split_is_refused_with_the_known_ones():
  with pytest.raises(ValueError, match=r"'dev'.*train.*validation.*test"):
    sampling.example(suite.BY_NAME["nli"], "dev", 0, 0)


# Labels are right: independent oracles ---------------------------------------------


def _slot_relation(slot, premise, hypothesis):
  """Relation of the hypothesis's word to the premise's, from the lexicon alone."""
  p, h = getattr(premise, slot), getattr(hypothesis, slot)
  if slot == "noun":
    table = lexicon.NOUNS
  elif slot == "verb":
    table = lexicon.VERBS
    synonyms = lexicon.VERB_SYNONYMS.get(p, ())
    if h == p or h in synonyms:
      return nli.SAME
  else:
    table = lexicon.PLACES
  if slot == "adjective":
    if h == p:
      return nli.SAME
    if p is None:
      return nli.SPEC
    if h is None:
      return nli.GEN
    (p_scale, p_pole), (h_scale, h_pole) = lexicon.pole_of(p), lexicon.pole_of(h)
    if p_scale != h_scale:
      return nli.SPEC
    return nli.SAME if p_pole == h_pole else nli.CONF
  if h == p:
    return nli.SAME
  if h is None:
    return nli.GEN
  if p is None or h in table.get(p, ()):
    return nli.SPEC
  if p not in table and h == lexicon.hypernym_of(p, table):
    return nli.GEN
  assert slot != "noun", (premise, hypothesis)  # no sibling nouns
  return nli.CONF


def _nli_oracle(premise, hypothesis):
  relations = {slot: _slot_relation(slot, premise, hypothesis) for slot in nli.SLOTS}
  if hypothesis.negated:
    assert hypothesis.place is None
    relations["verb"] = {nli.SAME: nli.CONF, nli.GEN: nli.CONF, nli.CONF: nli.GEN,
                         nli.SPEC: nli.SPEC}[relations["verb"]]
  values = set(relations.values())
  assert not {nli.SPEC, nli.CONF} <= values, (premise, hypothesis)  # never ambiguous
  if nli.CONF in values:
    return "contradiction"
  return "neutral" if nli.SPEC in values else "entailment"


def test_nli_labels_follow_from_the_lexicon():
  negated = collections.Counter()
  for i in range(600):
    label = nli.LABELS[i % 3]
    premise, hypothesis = nli.pair(_rng(i), label)
    assert _nli_oracle(premise, hypothesis) == label
    negated[label] += hypothesis.negated
  # Negation is no label's giveaway: it shows up under every label.
  assert all(20 <= negated[label] <= 120 for label in nli.LABELS), negated


def test_nli_realisation():
  scene = nli.Scene("animal", "old", "rests", "in the barn", negated=False)
  assert nli.realise(scene) == "an old animal rests in the barn"
  assert nli.realise(scene, True, True) == "in the barn, the old animal rests"
  assert nli.realise(nli.Scene("dog", None, "sleeps", None, True)) == "a dog does not sleep"


def _clause_polarity(clause):
  if "did not like" in clause:
    return "negative"
  if "did not mind" in clause:
    return "positive"
  for polarity, verbs in lexicon.FEELINGS.items():
    if clause.split()[1] in verbs:
      return polarity
  word = clause.split()[-1]
  polarity = next(p for d in lexicon.POLARITY.values() for p, ws in d.items() if word in ws)
  return polarity if " not " not in clause else ("negative" if polarity == "positive"
                                                else "positive")


def test_sentiment_labels_follow_from_polarity_negation_and_contrast():
  for spec_name in ("sentiment", "reviews"):
    spec = suite.BY_NAME[spec_name]
    for i in range(300):
      label = spec.labels[i % 2]
      text, target = spec.make(_rng(i), label)
      body = text.split(": ", 1)[1].rstrip(".")
      if body.startswith("although "):
        other, main = body[len("although "):].split(", ")
        assert _clause_polarity(other) != _clause_polarity(main)
      elif " but " in body:
        other, main = body.split(" but ")
        assert _clause_polarity(other) != _clause_polarity(main)
      elif " and " in body:
        other, main = body.split(" and ")
        assert _clause_polarity(other) == _clause_polarity(main)
      else:
        main = body
      assert _clause_polarity(main) == target == label, text


def _question_meaning(question):
  frame = next(i for i, group in enumerate(paraphrase.FRAMES)
               for f in group if question.startswith(f + " "))
  action, _, adjective, obj = question.rstrip("?").split()[-4:]
  adjectives = [pole for poles in lexicon.OBJECT_SCALES.values() for pole in poles]
  return (frame, next(i for i, s in enumerate(lexicon.ACTIONS) if action in s),
          next(i for i, s in enumerate(adjectives) if adjective in s),
          next(i for i, s in enumerate(lexicon.OBJECTS) if obj in s))


def test_paraphrase_labels_follow_from_synonymy():
  for i in range(300):
    label = paraphrase.LABELS[i % 2]
    first, second = paraphrase.pair(_rng(i), label)
    assert first != second
    same = _question_meaning(first) == _question_meaning(second)
    assert same == (label == "duplicate"), (first, second)


def test_qnli_entailment_means_the_sentence_answers_the_question():
  third = {base: third for third, base, _ in lexicon.ACTIVITIES + lexicon.TRANSACTIONS}
  for i in range(300):
    label = ("entailment", "not_entailment")[i % 2]
    text, _ = suite.BY_NAME["qnli"].make(_rng(i), label)
    question, sentence = re.fullmatch(r"question: (.*\?) sentence: (.*)\.", text).groups()
    for time in lexicon.TIMES:
      sentence = sentence.removesuffix(f" {time}")
    asks_about = re.fullmatch(r"(where|what) does (\w+) (\w+)\?", question)
    if asks_about:
      wh, name, base = asks_about.groups()
      shape = r" (in|at|on) the \w+" if wh == "where" else r" an? \w+"
      answers = re.fullmatch(f"{name} {third[base]}{shape}", sentence) is not None
    else:
      verb_and_object = re.fullmatch(r"who (.*)\?", question).group(1)
      answers = re.fullmatch(rf"\w+ {verb_and_object}", sentence) is not None
    assert answers == (label == "entailment"), text


def test_span_qa_has_one_answering_fact_among_distractors():
  for i in range(300):
    rng = _rng(i)
    question = facts.random_question(rng, facts.random_fact(rng))
    story = facts.context(rng, question, 3)
    answering = [f for f in story if question.key(f) == question.key(question.fact)]
    assert answering == [question.fact]
    others = {facts.Question(f, question.asks).answer for f in story if f != question.fact}
    assert others and question.answer not in others  # other candidates are in sight
  for i in range(100):
    text, answer = suite.BY_NAME["squad"].make(_rng(i), None)
    assert re.search(rf"\b{answer}\b", text.split(" context: ")[1]), text
    text, answer = suite.BY_NAME["mrqa"].make(_rng(i), None)
    assert re.search(rf"\b{answer}\b", text.split(" question: ")[0]), text


def test_cloze_answer_is_the_only_name_that_fits_the_query():
  synonyms = {verb: group for group in lexicon.RELATIONS for verb in group}
  for i in range(300):
    passage, query, answer = cloze.example(_rng(i), 3)
    facts_ = re.findall(r"(\w+) (\w+) (\w+)\.", passage)
    passive = re.fullmatch(r"(\S+) was (\w+) by (\S+)\.", query)
    agent, verb, patient = (passive.group(3), passive.group(2), passive.group(1)) if (
        passive) else re.fullmatch(r"(\S+) (\w+) (\S+)\.", query).groups()
    fits = {(a if agent == cloze.PLACEHOLDER else p) for a, v, p in facts_
            if synonyms[v] == synonyms[verb]
            and (p == patient if agent == cloze.PLACEHOLDER else a == agent)}
    assert fits == {answer}, (passage, query)


# SeqIO registration -----------------------------------------------------------------


def test_constants_and_mixtures_name_the_right_tasks():
  assert synthetic.SOURCE_TASKS == ("synth_nli", "synth_qnli", "synth_paraphrase",
                                    "synth_sentiment", "synth_squad", "synth_cloze")
  assert synthetic.TARGET_TASKS == ("synth_rte", "synth_reviews", "synth_mrqa")
  assert sorted(registry.task_names("synth_source")) == sorted(synthetic.SOURCE_TASKS)
  assert sorted(registry.task_names("synth_target")) == sorted(synthetic.TARGET_TASKS)
  source = seqio.get_mixture_or_task("synth_source")
  for task in source.tasks:  # examples-proportional
    assert source.get_rate(task) == task.num_input_examples("train") == 3000


def test_class_labels_are_registered_for_rank_classification():
  assert registry.class_labels("synth_nli") == ("entailment", "neutral", "contradiction")
  assert registry.class_labels("synth_rte") == ("entailment", "not_entailment")
  assert registry.class_labels("synth_reviews") == ("positive", "negative")
  assert registry.class_labels("synth_squad") is None


@pytest.mark.parametrize("name", synthetic.SOURCE_TASKS + synthetic.TARGET_TASKS)
def test_every_task_yields_tokenized_examples_through_seqio(name):
  task = seqio.get_mixture_or_task(name)
  vocabulary = task.output_features["inputs"].vocabulary
  assert isinstance(vocabulary, seqio.ByteVocabulary)
  assert task.num_input_examples("test") == 200
  dataset = task.get_dataset({"inputs": 128, "targets": 16}, split="test", shuffle=False)
  examples = list(dataset.take(8).as_numpy_iterator())
  assert len(examples) == 8
  spec = suite.BY_NAME[name.removeprefix("synth_")]
  for index, example in enumerate(examples):
    expected = sampling.example(spec, "test", index, 0)
    assert example["inputs_pretokenized"].decode() == expected["inputs"]
    assert example["targets_pretokenized"].decode() == expected["targets"]
    for field in ("inputs", "targets"):
      ids = example[field].tolist()
      assert ids[-1] == 1 and 1 not in ids[:-1]  # one EOS, at the end
      assert vocabulary.decode(ids) == expected[field]
    assert len(example["inputs"]) <= sampling.MAX_INPUT_BYTES + 1
  metric = task.metric_fns[0]
  targets = [e["targets_pretokenized"].decode() for e in examples]
  score = metric(targets, targets)
  assert set(score) == ({"accuracy"} if spec.labels else {"em", "f1"})
  assert all(value == 100.0 for value in score.values())


def test_register_swaps_vocabulary_sizes_and_prefix():
  vocabulary = seqio.ByteVocabulary(extra_ids=10)
  names = synthetic.register(vocabulary, prefix="synth_small", seed=1,
                             source_sizes={"train": 40, "validation": 8, "test": 8},
                             target_sizes={"train": 20, "validation": 8, "test": 8},
                             pretrain_sizes={"train": 30, "validation": 5})
  assert names.target_mixture == "synth_small_target"
  task = seqio.get_mixture_or_task("synth_small_rte")
  assert task.output_features["targets"].vocabulary is vocabulary
  assert task.num_input_examples("train") == 20
  assert len(list(task.get_dataset(None, split="train", shuffle=False))) == 20
  with pytest.raises(ValueError, match="synth_small_nli.*overwrite=True"):
    synthetic.register(vocabulary, prefix="synth_small")
  again = synthetic.register(vocabulary, prefix="synth_small", overwrite=True)
  assert seqio.get_mixture_or_task(again.source_tasks[0]).num_input_examples("train") == 3000
  pretrain = seqio.get_mixture_or_task(names.pretrain_task)
  example = next(pretrain.get_dataset({"inputs": 128, "targets": 64}, split="validation",
                                      shuffle=False).as_numpy_iterator())
  assert example["targets"][0] == vocabulary.vocab_size - 1 == 268


def test_register_refuses_bad_sizes_and_sentinel_free_vocabularies():
  with pytest.raises(ValueError, match=r"source sizes name splits \['train'\]"):
    synthetic.register(prefix="synth_bad", source_sizes={"train": 10})
  with pytest.raises(ValueError, match="positive int"):
    synthetic.register(prefix="synth_bad",
                       target_sizes={"train": 0, "validation": 1, "test": 1})
  with pytest.raises(ValueError, match="extra_ids >= "):
    synthetic.register(seqio.PassThroughVocabulary(300), prefix="synth_bad")
  assert not any(n.startswith("synth_bad") for n in seqio.TaskRegistry.names())


# Metrics ----------------------------------------------------------------------------


def test_accuracy_on_hand_worked_examples():
  assert metrics.accuracy(["a", "b", "a", "c"], ["a", "b", "c", "c"]) == {"accuracy": 75.0}
  with pytest.raises(ValueError, match="2 targets but 1 predictions"):
    metrics.accuracy(["a", "b"], ["a"])
  with pytest.raises(ValueError, match="at least one"):
    metrics.accuracy([], [])


def test_squad_metrics_on_hand_worked_examples():
  # 'the garden' ~ 'garden' after normalisation; 'a red kite' vs 'kite': P 1, R 1/2.
  score = metrics.squad(["the garden", "mia", "a red kite"], ["Garden.", "tom", "kite"])
  assert score["em"] == pytest.approx(100 / 3)
  assert score["f1"] == pytest.approx(100 * (1 + 0 + 2 / 3) / 3)
  assert metrics.normalize_answer("  The  Old, barn! ") == "old barn"


# Span corruption --------------------------------------------------------------------


def test_noise_mask_shape():
  mask = span_corruption.noise_mask(100, 0.15, 3.0, np.random.default_rng(0))
  assert mask.sum() == 15 and not mask[0] and mask[-1]
  starts = np.flatnonzero(mask & ~np.concatenate([[False], mask[:-1]]))
  assert len(starts) == span_corruption.num_spans(100, 0.15, 3.0) == 5
  assert span_corruption.target_length(100, 0.15, 3.0) == 15 + 5 + 1
  with pytest.raises(ValueError, match="at least 2 tokens"):
    span_corruption.noise_mask(1, 0.15, 3.0, np.random.default_rng(0))


def _reconstruct(inputs, targets, vocab_size):
  """Fills each sentinel in the inputs with the tokens that follow it in the targets."""
  spans, current = {}, None
  for token in targets:
    if token >= vocab_size - 128:
      current = spans.setdefault(token, [])
    else:
      current.append(token)
  return [t for token in inputs for t in spans.get(token, [token])]


def test_pretraining_examples_are_span_corrupted_and_targets_undo_it():
  task = seqio.get_mixture_or_task(synthetic.PRETRAIN_TASK)
  vocabulary = task.output_features["targets"].vocabulary
  lengths = {"inputs": 128, "targets": 64}
  examples = list(task.get_dataset(lengths, split="validation", shuffle=False)
                  .take(20).as_numpy_iterator())
  again = list(task.get_dataset(lengths, split="validation", shuffle=False)
               .take(20).as_numpy_iterator())
  noised = total = 0
  for example, repeat in zip(examples, again):
    np.testing.assert_array_equal(example["inputs"], repeat["inputs"])
    assert len(example["targets"]) <= synthetic.PRETRAIN_TARGET_TOKENS
    inputs, targets = example["inputs"].tolist()[:-1], example["targets"].tolist()[:-1]
    clean = vocabulary.encode(example["targets_pretokenized"].decode())
    sentinels = [t for t in inputs if t >= 259 - 128]
    assert sentinels == list(range(258, 258 - len(sentinels), -1))
    assert targets[0] == 258
    assert _reconstruct(inputs, targets, vocabulary.vocab_size) == clean
    noised += len(targets) - len(sentinels)
    total += len(clean)
  assert 0.13 < noised / total < 0.17


def test_pretraining_mixture_is_half_corpus_half_sources_and_never_the_targets():
  mixture = seqio.get_mixture_or_task(synthetic.PRETRAIN_MIXTURE)
  rates = {task.name: mixture.get_rate(task) for task in mixture.tasks}
  assert set(rates) == {synthetic.PRETRAIN_TASK, *synthetic.SOURCE_TASKS}
  assert rates[synthetic.PRETRAIN_TASK] == sum(rates[n] for n in synthetic.SOURCE_TASKS)
  assert len({rates[n] for n in synthetic.SOURCE_TASKS}) == 1
