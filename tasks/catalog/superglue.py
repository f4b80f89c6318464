"""SuperGLUE: the paper's five target tasks, ReCoRD (a source task) and the cheap rest (COPA, RTE).

WSC reads `super_glue/wsc.fixed`, TFDS's version whose spans are real substrings of the text,
and marks them in it (formats.wsc). ATTEMPT's task names are `superglue-<config>`.
"""

from tasks import metrics
from tasks.catalog import formats
from tasks.catalog import postprocessors as post
from tasks.catalog import splits
from tasks.catalog.spec import TaskSpec

BOOLEAN = ("False", "True")


def _prefix(config: str) -> formats.TaskPrefix:
  return formats.TaskPrefix(config.split(".")[0], f"superglue-{config}")


def _classification(name, config, template, labels, metric_fns=(metrics.accuracy,),
                    format_fn=formats.label):
  return TaskSpec(name=f"mpt_superglue_{name}", prefix=_prefix(config),
                  tfds_names=(f"super_glue/{config}:1.0.2",),
                  parts=splits.small(), template=template, format=format_fn(labels),
                  postprocess_fn=post.label_id(labels), metric_fns=metric_fns, labels=labels)


SPECS = (
    _classification("boolq", "boolq", "question: {question} passage: {passage}", BOOLEAN),
    _classification("cb", "cb", "premise: {premise} hypothesis: {hypothesis}",
                    ("entailment", "contradiction", "neutral"),
                    metric_fns=(metrics.macro_f1_and_accuracy(num_classes=3),)),
    _classification("copa", "copa",
                    "premise: {premise} question: {question} choice1: {choice1} "
                    "choice2: {choice2}", ("choice1", "choice2")),
    TaskSpec(name="mpt_superglue_multirc", prefix=_prefix("multirc"),
             tfds_names=("super_glue/multirc:1.0.2",),
             parts=splits.small(),
             template="question: {question} answer: {answer} paragraph: {paragraph}",
             format=formats.multirc(BOOLEAN), postprocess_fn=post.grouped_label(BOOLEAN),
             metric_fns=(metrics.multirc,), labels=BOOLEAN, paper_metric="f1a"),
    _classification("rte", "rte", "premise: {premise} hypothesis: {hypothesis}",
                    ("entailment", "not_entailment")),
    _classification("wic", "wic", "word: {word} sentence1: {sentence1} sentence2: {sentence2}",
                    BOOLEAN),
    _classification("wsc", "wsc.fixed", "text: {text}", BOOLEAN, format_fn=formats.wsc),
    TaskSpec(name="mpt_record", prefix=_prefix("record"), tfds_names=("super_glue/record:1.0.2",),
             parts=splits.large(),
             template="query: {query} entities: {entities} passage: {passage}",
             format=formats.record(), postprocess_fn=post.record_answer,
             metric_fns=(metrics.record,), paper_metric="f1"),
)
