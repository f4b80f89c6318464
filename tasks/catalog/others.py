"""The paper's "Others" targets (WinoGrande, Yelp-2, SciTail, PAWS-Wiki) and the extra
sources of its 12-source variant (AG News, CommonsenseQA, OpenBookQA, ARC, ANLI).

The paper gives no split rule for the extra sources; they follow ATTEMPT's: datasets with
three labelled splits keep them, AG News (no validation set) holds out 1,000 training
examples like the large datasets, and CommonsenseQA (under 10k examples, test labels
hidden) halves its validation set like the small ones. TFDS has no CommonsenseQA builder:
the task reads UnifiedQA's copy (`unified_qa/commonsenseqa`), whose inputs already list
the choices and whose targets are the answer text. ARC is Easy and Challenge together,
ANLI its three rounds together.
"""

from tasks import metrics
from tasks.catalog import formats
from tasks.catalog import postprocessors as post
from tasks.catalog import splits
from tasks.catalog.spec import TaskSpec

LETTERS = ("A", "B", "C", "D", "E")


def _prefix(name: str) -> formats.TaskPrefix:
  return formats.TaskPrefix(name, name)


def _classification(name, prefix, tfds_names, template, labels, parts, key="label",
                    numbered=True):
  return TaskSpec(name=name, prefix=_prefix(prefix), tfds_names=tfds_names, parts=parts,
                  template=template, format=formats.label(labels, key, numbered),
                  postprocess_fn=post.label_id(labels, numbered),
                  metric_fns=(metrics.accuracy,), labels=labels, numbered_labels=numbered)


SPECS = (
    _classification("mpt_winogrande", "winogrande", ("winogrande:1.2.0",),
                    "sentence: {sentence} option1: {option1} option2: {option2}", ("1", "2"),
                    splits.large(train="train_xl")),
    _classification("mpt_yelp", "yelp_polarity", ("yelp_polarity_reviews:0.2.0",), "text: {text}",
                    ("negative", "positive"), splits.large(test="test", train_cap=100_000)),
    _classification("mpt_scitail", "scitail", ("sci_tail:1.0.0",),
                    "premise: {premise} hypothesis: {hypothesis}", ("entails", "neutral"),
                    splits.small()),
    _classification("mpt_paws", "paws", ("paws_wiki/labeled_final_tokenized:1.1.0",),
                    "sentence1: {sentence1} sentence2: {sentence2}",
                    ("different_meaning", "paraphrase"), splits.own()),
    _classification("mpt_agnews", "ag_news", ("ag_news_subset:1.0.0",),
                    "title: {title} description: {description}",
                    ("World", "Sports", "Business", "Sci/Tech"), splits.large(test="test")),
    TaskSpec(name="mpt_commonsense_qa", prefix=_prefix("commonsense_qa"),
             tfds_names=("unified_qa/commonsenseqa:1.0.0",),
             parts=splits.small(), template="question: {input}",
             format=formats.text_target("output"), postprocess_fn=post.strip,
             metric_fns=(metrics.accuracy,)),
    _classification("mpt_openbookqa", "openbookqa", ("openbookqa:0.1.0",),
                    "question: {question/stem} choices: A: {question/choice_A} "
                    "B: {question/choice_B} C: {question/choice_C} D: {question/choice_D}",
                    LETTERS[:4], splits.own(), key="answerKey", numbered=False),
    TaskSpec(name="mpt_arc", prefix=_prefix("arc"),
             tfds_names=("ai2_arc/ARC-Easy:1.0.0", "ai2_arc/ARC-Challenge:1.0.0"),
             parts=splits.own(), template="question: {question} choices: {choices}",
             format=formats.lettered_choices(LETTERS),
             postprocess_fn=post.label_id(LETTERS, numbered=False),
             metric_fns=(metrics.accuracy,), labels=LETTERS, numbered_labels=False),
    _classification("mpt_anli", "anli", ("anli/r1:0.1.0", "anli/r2:0.1.0", "anli/r3:0.1.0"),
                    "premise: {context} hypothesis: {hypothesis}",
                    ("entailment", "neutral", "contradiction"), splits.own()),
)
