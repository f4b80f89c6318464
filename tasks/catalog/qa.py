"""Extractive QA: SQuAD v1.1 (a source task) and the paper's four MRQA target tasks."""

from tasks import metrics
from tasks.catalog import formats
from tasks.catalog import postprocessors as post
from tasks.catalog import splits
from tasks.catalog.spec import TaskSpec

TEMPLATE = "question: {question} context: {context}"


def _qa(name, tfds_name, answers_key, prefix):
  return TaskSpec(name=name, prefix=formats.TaskPrefix(prefix, prefix), tfds_names=(tfds_name,),
                  parts=splits.large(), template=TEMPLATE,
                  format=formats.extractive_qa(answers_key), postprocess_fn=post.answers,
                  metric_fns=(metrics.squad,), paper_metric="f1")


SPECS = (
    _qa("mpt_squad", "squad/v1.1:3.0.0", "answers/text", "squad"),
    _qa("mpt_mrqa_nq", "mrqa/natural_questions:1.0.0", "answers", "nq"),
    _qa("mpt_mrqa_hotpotqa", "mrqa/hotpot_qa:1.0.0", "answers", "hotpotqa"),
    _qa("mpt_mrqa_searchqa", "mrqa/search_qa:1.0.0", "answers", "searchqa"),
    _qa("mpt_mrqa_newsqa", "mrqa/news_qa:1.0.0", "answers", "newsqa"),
)
