"""Every catalog task and mixture end to end on mocked TFDS data (see tests/helpers.py).

The expectations below restate the paper's rules (PAPER.md, README.md) rather than
reading them from the catalog's specs, so a spec that drifts from the documentation fails.
"""

import contextlib
import functools
import itertools
import string

import gin
import numpy as np
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

import tasks.catalog
from tasks import registry
from tasks.catalog import formats
from tasks.catalog import splits
from tests import helpers
from tests.mocked_catalog import as_text
from tests.mocked_catalog import first_text
from tests.helpers import SUFFIX
from tests.mocked_catalog import trace

# The paper's split rules, task by task. LARGE: the TFDS split that becomes `test`;
# OWN: the TFDS splits that become train, validation, test.
SMALL = {"mpt_glue_stsb", "mpt_glue_mrpc", "mpt_glue_rte", "mpt_glue_cola",
         "mpt_superglue_boolq", "mpt_superglue_cb", "mpt_superglue_copa",
         "mpt_superglue_multirc", "mpt_superglue_rte", "mpt_superglue_wic", "mpt_superglue_wsc",
         "mpt_scitail", "mpt_commonsense_qa"}
LARGE = {"mpt_glue_qqp": "validation", "mpt_glue_qnli": "validation",
         "mpt_glue_sst2": "validation", "mpt_squad": "validation", "mpt_record": "validation",
         "mpt_mrqa_nq": "validation", "mpt_mrqa_hotpotqa": "validation",
         "mpt_mrqa_searchqa": "validation", "mpt_mrqa_newsqa": "validation",
         "mpt_winogrande": "validation", "mpt_yelp": "test", "mpt_agnews": "test"}
LARGE_TRAIN = {"mpt_winogrande": "train_xl"}
OWN = {"mpt_glue_mnli": ("train", "validation_mismatched", "validation_matched"),
       "mpt_paws": ("train", "validation", "test"),
       "mpt_openbookqa": ("train", "validation", "test"),
       "mpt_arc": ("train", "validation", "test"),
       "mpt_anli": ("train", "validation", "test")}
SPLITS = ("train", "validation", "test")

# How targets are made, by task (classification tasks name their class id).
QA = {"mpt_squad": "answers.0/text", "mpt_mrqa_nq": "answers.0", "mpt_mrqa_hotpotqa": "answers.0",
      "mpt_mrqa_searchqa": "answers.0", "mpt_mrqa_newsqa": "answers.0"}
METRIC_KEYS = {"mpt_glue_cola": {"matthews_corr"},
               "mpt_glue_stsb": {"pearson_corr", "spearman_corr"},
               "mpt_glue_mrpc": {"f1", "accuracy"}, "mpt_glue_qqp": {"f1", "accuracy"},
               "mpt_superglue_cb": {"macro_f1", "accuracy"},
               "mpt_superglue_multirc": {"f1a", "em"}, "mpt_record": {"f1", "em"},
               **{name: {"f1", "em"} for name in QA}}

# Each task's prefix in ATTEMPT's style and in T5's (where it differs), and the tasks whose
# targets stay answer letters in ATTEMPT's style (every other classification task's are
# class ids there).
ATTEMPT_NAMES = {
    "mpt_glue_mnli": "mnli", "mpt_glue_qqp": "qqp", "mpt_glue_qnli": "qnli",
    "mpt_glue_sst2": "sst2", "mpt_glue_stsb": "stsb", "mpt_glue_mrpc": "mrpc",
    "mpt_glue_rte": "rte", "mpt_glue_cola": "cola", "mpt_superglue_boolq": "superglue-boolq",
    "mpt_superglue_cb": "superglue-cb", "mpt_superglue_copa": "superglue-copa",
    "mpt_superglue_multirc": "superglue-multirc", "mpt_superglue_rte": "superglue-rte",
    "mpt_superglue_wic": "superglue-wic", "mpt_superglue_wsc": "superglue-wsc.fixed",
    "mpt_record": "superglue-record", "mpt_squad": "squad", "mpt_mrqa_nq": "nq",
    "mpt_mrqa_hotpotqa": "hotpotqa", "mpt_mrqa_searchqa": "searchqa",
    "mpt_mrqa_newsqa": "newsqa", "mpt_winogrande": "winogrande", "mpt_yelp": "yelp_polarity",
    "mpt_scitail": "scitail", "mpt_paws": "paws", "mpt_agnews": "ag_news",
    "mpt_commonsense_qa": "commonsense_qa", "mpt_openbookqa": "openbookqa", "mpt_arc": "arc",
    "mpt_anli": "anli"}
T5_NAMES = {**ATTEMPT_NAMES, **{name: prefix.split("-")[1].split(".")[0]
                                for name, prefix in ATTEMPT_NAMES.items()
                                if prefix.startswith("superglue-")}}
LETTERED = {"mpt_openbookqa", "mpt_arc"}
STYLES = ("attempt", "t5")

pytestmark = pytest.mark.usefixtures("byte_catalog", "mock_catalog_tfds")
ALL_SPECS = tasks.catalog.SPECS
SPEC_IDS = [spec.name for spec in ALL_SPECS]


def task_of(spec) -> seqio.Task:
  return seqio.get_mixture_or_task(spec.name + SUFFIX)


def read(task_or_source, split):
  if isinstance(task_or_source, seqio.Task):
    ds = task_or_source.get_dataset(None, split=split, shuffle=False)
  else:
    ds = task_or_source.get_dataset(split, shuffle=False)
  return list(ds.as_numpy_iterator())


def test_the_catalog_covers_the_paper():
  assert set(SPEC_IDS) == SMALL | set(LARGE) | set(OWN)
  assert len(SPEC_IDS) == len(set(SPEC_IDS)) == 30
  assert set(registry.task_names("mpt_source6")) == {
      "mpt_glue_mnli", "mpt_glue_qnli", "mpt_glue_qqp", "mpt_glue_sst2", "mpt_squad",
      "mpt_record"}
  assert set(registry.task_names("mpt_source12")) == set(registry.task_names("mpt_source6")) | {
      "mpt_agnews", "mpt_commonsense_qa", "mpt_openbookqa", "mpt_arc", "mpt_anli",
      "mpt_winogrande"}
  assert len(registry.task_names("glue_mpt")) == 8
  assert set(registry.task_names("superglue_mpt")) == {
      "mpt_superglue_multirc", "mpt_superglue_boolq", "mpt_superglue_wic",
      "mpt_superglue_wsc", "mpt_superglue_cb"}


def test_unknown_names_fail_with_close_registered_names():
  with pytest.raises(ValueError, match=r"'mpt_glue_rtee'.*Close registered names: .*mpt_glue_rte"):
    registry.get_task_or_mixture("mpt_glue_rtee")
  with pytest.raises(ValueError, match=r"superglue_mpt"):
    registry.get_task_or_mixture("superglue_mtp")


@pytest.mark.parametrize("spec", ALL_SPECS, ids=SPEC_IDS)
def test_tfds_names_are_pinned_to_the_installed_builders(spec):
  for name in spec.tfds_names:
    builder = tfds.builder(name)
    assert str(builder.version) == name.rsplit(":", 1)[1]
    features = builder.info.features
    label_key = "answerKey" if "answerKey" in features else "label"
    if spec.labels is not None:
      assert len(spec.labels) == features[label_key].num_classes, "a label per TFDS class"


@pytest.mark.parametrize("spec", ALL_SPECS, ids=SPEC_IDS)
def test_split_rules(spec):
  """Documented sizes, all from the documented TFDS split, disjoint, deterministic."""
  source = task_of(spec).source
  origins = [name.split(":")[0] for name in spec.tfds_names]
  seen = {}
  for split in SPLITS:
    examples = read(source, split)
    assert _same(read(source, split), examples), "reading a split twice must agree"
    traces = [trace(first_text(ex)) for ex in examples]
    assert len(set(traces)) == len(traces) == source.num_input_examples(split)
    seen[split] = set(traces)
  assert not any(seen[a] & seen[b] for a, b in itertools.combinations(SPLITS, 2))

  def whole(tfds_split):
    return {(o, tfds_split, p) for o, name in zip(origins, spec.tfds_names)
            for p in range(tfds.builder(name).info.splits[tfds_split].num_examples)}

  def permuted(tfds_split, start, stop):
    n = source.tfds_size(tfds_split)
    return {(origins[0], tfds_split, int(p))
            for p in np.random.RandomState(42).permutation(n)[start:stop]}

  name = spec.name
  if name in SMALL:
    n = source.tfds_size("validation")
    assert seen["train"] == whole("train")
    assert seen["validation"] == permuted("validation", 0, n // 2)
    assert seen["test"] == permuted("validation", n // 2, None)
    assert seen["validation"] | seen["test"] == whole("validation")
  elif name in LARGE:
    train = LARGE_TRAIN.get(name, "train")
    n = source.tfds_size(train)
    assert len(seen["validation"]) == 1000
    assert seen["validation"] == permuted(train, 0, 1000)
    assert seen["train"] == permuted(train, 1000, 1000 + 100_000 if name == "mpt_yelp" else None)
    # (The mock's train split is too small for Yelp's cap to bite; see the tests below.)
    assert seen["train"] | seen["validation"] == whole(train) and len(seen["train"]) == n - 1000
    assert seen["test"] == whole(LARGE[name])
  else:
    for split, tfds_split in zip(SPLITS, OWN[name]):
      assert seen[split] == whole(tfds_split)


def _same(a, b):
  leaves_a, leaves_b = tf.nest.flatten(a), tf.nest.flatten(b)
  return len(leaves_a) == len(leaves_b) and all(
      np.array_equal(x, y) for x, y in zip(leaves_a, leaves_b))


def test_a_training_cap_keeps_the_next_examples_of_the_permutation():
  source = splits.SplitRuleSource(["glue/sst2:2.0.0"], splits.large(train_cap=3))
  n = source.tfds_size("train")
  permutation = np.random.RandomState(42).permutation(n)
  for split, expected in (("train", permutation[1000:1003]), ("validation", permutation[:1000])):
    positions = [trace(first_text(ex))[2] for ex in read(source, split)]
    assert sorted(positions) == sorted(expected.tolist())
    assert source.num_input_examples(split) == len(expected)


def test_a_dataset_without_split_sizes_is_refused(monkeypatch):
  monkeypatch.setattr(seqio.utils.LazyTfdsLoader, "size", lambda self, split: np.inf)
  source = splits.SplitRuleSource(["glue/rte:2.0.0"], splits.small())
  with pytest.raises(ValueError, match=r"glue/rte:2.0.0 gives no size for split 'validation'"
                     r".*tfds build"):
    source.num_input_examples("validation")


def test_yelp_keeps_100k_of_its_560k_training_examples():
  parts = tasks.catalog.SPEC_BY_NAME["mpt_yelp"].parts
  assert parts["train"].count(560_000) == 100_000
  assert parts["validation"].count(560_000) == 1000
  train, validation = parts["train"].positions(560_000), parts["validation"].positions(560_000)
  assert not set(train) & set(validation)


@contextlib.contextmanager
def text_style(style):
  gin.bind_parameter("text_format.style", style)
  try:
    yield
  finally:
    gin.bind_parameter("text_format.style", "attempt")  # the default


def _expected(spec, origin, tfds_split, pos, style):
  """(inputs, targets) the documented format gives the fake example at `pos`."""
  def text(path):
    return f"{origin} {tfds_split} {pos} {path}"
  derived = {
      "entities": f"{text('entities.0')}, {text('entities.1')}",
      "choices": " ".join(f"{'ABCDE'[pos % 5]}: {text(f'choices.{j}/text')}" for j in (0, 1)),
  }
  fields = {f for _, f, _, _ in string.Formatter().parse(spec.template) if f}
  prefix = (ATTEMPT_NAMES if style == "attempt" else T5_NAMES)[spec.name]
  inputs = f"{prefix} " + spec.template.format_map({f: derived.get(f, text(f)) for f in fields})
  if spec.name in QA:
    targets = [text(QA[spec.name])]
  elif spec.name == "mpt_record":
    targets = [text("answers.0"), text("answers.1")]  # one example per answer
  elif spec.name == "mpt_commonsense_qa":
    targets = [text("output")]
  elif spec.name == "mpt_glue_stsb":
    score = np.float32(pos * 37 % 500) / np.float32(100)
    targets = [f"{np.round(score * np.float32(5)) / 5:.1f}"]
  elif style == "attempt" and spec.name not in LETTERED:
    targets = [str(pos % len(spec.labels))]
  else:
    targets = [spec.labels[pos % len(spec.labels)]]
  return inputs, targets


@functools.lru_cache(maxsize=None)
def _task_examples(name, split, style="attempt"):
  """A task's preprocessed split (read once per test module: the mock lives that long)."""
  with text_style(style):
    return read(seqio.get_mixture_or_task(name + SUFFIX), split)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("spec", ALL_SPECS, ids=SPEC_IDS)
def test_format_and_tokenization(spec, style):
  vocabulary = seqio.ByteVocabulary()
  for split in SPLITS:
    examples = _task_examples(spec.name, split, style)
    expected = []
    for ex in examples:
      origin, tfds_split, pos = trace(as_text(ex["inputs_pretokenized"]))
      expected.append((origin, tfds_split, pos))
    for key in sorted(set(expected)):
      inputs, targets = _expected(spec, *key, style)
      got = [ex for ex, k in zip(examples, expected) if k == key]
      assert [as_text(ex["inputs_pretokenized"]) for ex in got] == [inputs] * len(targets)
      assert [as_text(ex["targets_pretokenized"]) for ex in got] == targets
    for ex in examples[:3]:
      for feature in ("inputs", "targets"):
        tokens = list(ex[feature])
        assert tokens[-1] == vocabulary.eos_id
        assert vocabulary.decode(tokens[:-1]) == as_text(ex[f"{feature}_pretokenized"])
    assert "task_ids" not in examples[0]


def test_record_passage_highlights_become_sentences():
  passage = tf.constant("Storm hits coast.\n@highlight\nThousands flee\n@highlight\nRoads shut")
  assert formats.record_passage(passage).numpy().decode() == (
      "Storm hits coast. Thousands flee. Roads shut")


@pytest.mark.parametrize("spec", ALL_SPECS, ids=SPEC_IDS)
def test_targets_round_trip_through_the_postprocessor_and_metric(spec):
  task = task_of(spec)
  for split in ("validation", "test"):
    examples = _task_examples(spec.name, split)
    targets = [task.postprocess_fn(as_text(ex["targets_pretokenized"]), example=ex,
                                   is_target=True) for ex in examples]
    perfect = [task.postprocess_fn(as_text(ex["targets_pretokenized"]), example=ex,
                                   is_target=False) for ex in examples]
    if spec.labels is not None:
      ids = [t["label"] if isinstance(t, dict) else t for t in targets]
      traces = [trace(as_text(ex["inputs_pretokenized"]))[2] for ex in examples]
      assert ids == [p % len(spec.labels) for p in traces]
    if spec.name == "mpt_glue_stsb":
      assert targets == [float(as_text(ex["targets_pretokenized"])) for ex in examples]
      assert all(0 <= t <= 5 and round(t * 5, 6) == round(t * 5) for t in targets)
    scores = {}
    for metric_fn in task.metric_fns:
      scores.update(metric_fn(targets, perfect))
    assert set(scores) == METRIC_KEYS.get(spec.name, {"accuracy"})
    assert spec.paper_metric in scores
    expected = {k: 100.0 for k in scores}
    if "macro_f1" in scores:  # a class absent from the split scores F1 0, as in scikit-learn
      expected["macro_f1"] = 100.0 * len(set(targets)) / len(spec.labels)
    assert scores == pytest.approx(expected), (split, scores)


@pytest.mark.parametrize("style", STYLES)
def test_classification_tasks_register_their_labels_in_the_current_style(style):
  with text_style(style):
    for spec in ALL_SPECS:
      for name in (spec.name, spec.name + SUFFIX):
        if spec.labels is None:
          assert registry.class_labels(name) is None
        elif style == "attempt" and spec.name not in LETTERED:
          assert registry.class_labels(name) == tuple(str(i) for i in range(len(spec.labels)))
        else:
          assert registry.class_labels(name) == tuple(spec.labels)


def test_an_unknown_text_style_is_refused_naming_the_choices():
  with text_style("bart"):
    with pytest.raises(ValueError, match="text_format.style is 'bart'; choose one of attempt, t5"):
      _task_examples("mpt_glue_rte", "validation", "bart")


def _marked(text, span1, index1, span2, index2):
  example = {"text": tf.constant(text), "span1_text": tf.constant(span1),
             "span1_index": tf.constant(index1, tf.int64), "span2_text": tf.constant(span2),
             "span2_index": tf.constant(index2, tf.int64), "label": tf.constant(1, tf.int64)}
  ds = formats.wsc(("False", "True"))("text: {text}")(tf.data.Dataset.from_tensors(example))
  return next(ds.as_numpy_iterator())["inputs"].decode()


def test_wsc_marks_the_noun_with_stars_and_the_pronoun_with_hashes():
  text = "The city councilmen refused the demonstrators a permit because they feared violence."
  assert _marked(text, "The city councilmen", 0, "they", 9) == (
      "text: * The city councilmen * refused the demonstrators a permit because # they # "
      "feared violence.")


def test_wsc_marks_a_pronoun_before_the_noun_and_a_span_with_punctuation():
  # Span 2 first: span 1's index is unchanged by it. The marks go around the span text
  # only, so punctuation glued to the word stays outside, as in ATTEMPT.
  text = "When he arrived, Mr. Smith (the mayor) spoke."
  assert _marked(text, "Smith (the", 4, "he", 1) == (
      "text: When # he # arrived, Mr. * Smith (the * mayor) spoke.")


def test_multirc_drops_markup_from_its_texts():
  example = {"question": tf.constant("Who <b>won</b>?"), "answer": tf.constant("Ann"),
             "paragraph": tf.constant("Sent 1: Ann won.<br>Sent 2: <b>Bo</b> lost."),
             "label": tf.constant(1, tf.int64),
             "idx": {"paragraph": tf.constant(3), "question": tf.constant(4),
                     "answer": tf.constant(5)}}
  preprocess = formats.multirc(("False", "True"))(
      "question: {question} answer: {answer} paragraph: {paragraph}")
  got = next(preprocess(tf.data.Dataset.from_tensors(example)).as_numpy_iterator())
  assert got["inputs"].decode() == (
      "question: Who won? answer: Ann paragraph: Sent 1: Ann won. Sent 2: Bo lost.")
  assert got["targets"].decode() == "1" and got["group"].decode() == "3-4"


@pytest.mark.parametrize("mixture", sorted(tasks.catalog.mixtures.MIXTURES))
def test_mixtures_end_to_end(mixture):
  mix = seqio.get_mixture_or_task(mixture + SUFFIX)
  names = {t.name for t in mix.tasks}
  assert names == {n + SUFFIX for n in tasks.catalog.mixtures.MIXTURES[mixture]}
  for task in mix.tasks:  # examples-proportional, uncapped by default
    assert mix.get_rate(task) == task.num_input_examples("train")
  ds = mix.get_dataset({"inputs": 64, "targets": 16}, split="validation", shuffle=False,
                       num_epochs=1)
  examples = list(ds.take(2 * len(names)).as_numpy_iterator())
  assert examples and all(set(ex) >= {"inputs", "targets"} for ex in examples)
  assert all(len(ex["inputs"]) <= 64 and ex["targets"][-1] == 1 for ex in examples)


def test_the_mixture_cap_is_a_parameter():
  capped = tasks.catalog.register_all(seqio.ByteVocabulary(), "_capped", mixture_cap=3)
  assert "mpt_source6_capped" in capped
  mix = seqio.get_mixture_or_task("mpt_source6_capped")
  assert {mix.get_rate(t) for t in mix.tasks} == {3}
  mix = seqio.get_mixture_or_task("mpt_source6" + SUFFIX)
  gin.bind_parameter("examples_proportional_rate.maximum", 2)
  try:
    assert {mix.get_rate(t) for t in mix.tasks} == {2}
  finally:
    gin.bind_parameter("examples_proportional_rate.maximum", None)  # the default
  assert mix.get_rate(mix.tasks[0]) == mix.tasks[0].num_input_examples("train")


def test_the_documentation_lists_every_task_and_mixture():
  docs = (helpers.ROOT / "README.md").read_text()
  for spec in ALL_SPECS:
    row = next((line for line in docs.splitlines() if line.startswith(f"| `{spec.name}` |")),
               None)
    assert row, f"README.md has no table row for {spec.name}"
    assert all(f"`{name}`" in row for name in spec.tfds_names), row
    assert (f"`{spec.template}`" in row or spec.name == "mpt_superglue_wsc"), row
    assert f"`{ATTEMPT_NAMES[spec.name]}`" in row and f"`{T5_NAMES[spec.name]}`" in row, row
    assert f"**{spec.paper_metric}**" in row, row
  for mixture in tasks.catalog.mixtures.MIXTURES:
    assert f"| `{mixture}` |" in docs


def test_a_template_naming_a_missing_feature_fails_clearly():
  with pytest.raises(KeyError, match=r"\{premise\}.*it has hypothesis"):
    formats.fill("premise: {premise}", {"hypothesis": tf.constant("x")})
