"""GLUE: the paper's eight GLUE target tasks (MNLI, QQP, QNLI and SST-2 are also sources)."""

from tasks import metrics
from tasks.catalog import formats
from tasks.catalog import postprocessors as post
from tasks.catalog import splits
from tasks.catalog.spec import TaskSpec

NLI = ("entailment", "neutral", "contradiction")
ENTAILMENT = ("entailment", "not_entailment")


def _classification(name, template, labels, parts, metric_fns=(metrics.accuracy,),
                    paper_metric="accuracy"):
  return TaskSpec(name=f"mpt_glue_{name}", prefix=formats.TaskPrefix(name, name),
                  tfds_names=(f"glue/{name}:2.0.0",), parts=parts,
                  template=template, format=formats.label(labels),
                  postprocess_fn=post.label_id(labels), metric_fns=metric_fns, labels=labels,
                  paper_metric=paper_metric)


SPECS = (
    _classification("mnli", "premise: {premise} hypothesis: {hypothesis}", NLI,
                    splits.own(validation="validation_mismatched", test="validation_matched")),
    _classification("qqp", "question1: {question1} question2: {question2}",
                    ("not_duplicate", "duplicate"), splits.large(),
                    metric_fns=(metrics.f1_and_accuracy,)),
    _classification("qnli", "question: {question} sentence: {sentence}", ENTAILMENT,
                    splits.large()),
    _classification("sst2", "sentence: {sentence}", ("negative", "positive"), splits.large()),
    TaskSpec(name="mpt_glue_stsb", prefix=formats.TaskPrefix("stsb", "stsb"),
             tfds_names=("glue/stsb:2.0.0",), parts=splits.small(),
             template="sentence1: {sentence1} sentence2: {sentence2}", format=formats.score(),
             postprocess_fn=post.to_float, metric_fns=(metrics.pearson_and_spearman,),
             paper_metric="pearson_corr"),
    _classification("mrpc", "sentence1: {sentence1} sentence2: {sentence2}",
                    ("not_equivalent", "equivalent"), splits.small(),
                    metric_fns=(metrics.f1_and_accuracy,)),
    _classification("rte", "sentence1: {sentence1} sentence2: {sentence2}", ENTAILMENT,
                    splits.small()),
    _classification("cola", "sentence: {sentence}", ("unacceptable", "acceptable"),
                    splits.small(), metric_fns=(metrics.matthews_corr,),
                    paper_metric="matthews_corr"),
)
